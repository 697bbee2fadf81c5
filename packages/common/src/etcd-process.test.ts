// EtcdCluster against Debian's real etcd: a start whose picked port was taken by someone else in
// the meantime (the race freePort() leaves open) is retried on new ports; other failures are not.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EtcdCluster, freePort, httpGetJson } from './etcd-process';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!();
});

async function occupiedPort(): Promise<number> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); srv.close(() => resolve()); }));
  return (srv.address() as net.AddressInfo).port;
}

function tmpRoot(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-etcd-proc-test-'));
  cleanup.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('EtcdCluster start', () => {
  it('retries on new ports when a picked port was taken before etcd bound it', async () => {
    const taken = await occupiedPort();
    let picks = 0;
    const pickPort = async () => (picks++ === 0 ? taken : freePort());
    const etcd = await EtcdCluster.start({ dataRoot: tmpRoot(), members: 1, removeDataOnDestroy: true, pickPort });
    cleanup.push(() => etcd.destroy());
    expect(picks).toBeGreaterThan(2); // the first attempt's two ports, then new ones
    expect(etcd.endpoints[0]).not.toContain(`:${taken}`);
    const r = await httpGetJson(`${etcd.endpoints[0]}/health`);
    expect(r.body).toMatchObject({ health: 'true' });
  });

  it('does not retry a port the caller fixed, and says why the member exited', async () => {
    const taken = await occupiedPort();
    const root = tmpRoot();
    let picks = 0;
    const pickPort = async () => { picks++; return freePort(); };
    await expect(EtcdCluster.start({ dataRoot: root, members: 1, clientPorts: [taken], pickPort }))
      .rejects.toThrow(/exited during start-up/);
    // A fixed port that is taken would fail on every attempt: it is not retried.
    expect(picks).toBe(1);
    // The half-made member data of the attempts is gone; only logs may stay.
    expect(fs.readdirSync(root).filter((f) => !f.endsWith('.log'))).toEqual([]);
  });
});
