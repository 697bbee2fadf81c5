// The real binary as a real process: it serves health on its socket, answers what is not built
// yet with UNIMPLEMENTED, rejects bad config naming the key, and exits cleanly on SIGTERM.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { scheduler } from '@berth/api';
import { checkHealth, createClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-scheduler.js');

describe('berth-scheduler process', () => {
  let dir: string;
  let svc: ServiceProcess | undefined;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-scheduler-')); });
  afterEach(async () => {
    await svc?.stop();
    svc = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves SERVING health on its 0600 socket and exits 0 on SIGTERM', async () => {
    const sock = path.join(dir, 'run', 'scheduler.sock');
    svc = startServiceProcess(bin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state')]);
    expect(await waitServing(`unix://${sock}`), svc.output()).toBe('SERVING');
    for (const name of ['berth.scheduler.v1.Scheduler']) expect(await checkHealth(`unix://${sock}`, name)).toBe('SERVING');
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(dir, 'state')).isDirectory()).toBe(true);
    const client = createClient(scheduler.SchedulerClient, { target: `unix://${sock}` });
    const err = await new Promise<ServiceError | null>((resolve) => (client as any).status({}, (e: ServiceError | null) => resolve(e)));
    client.close();
    expect(err?.code).toBe(status.UNIMPLEMENTED);
    expect(err?.details).toMatch(/is not built yet \(issue/);
    const exit = await svc.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('uses BERTH_RUN_DIR for its default socket', async () => {
    const runDir = path.join(dir, 'run');
    svc = startServiceProcess(bin, ['--state-dir', path.join(dir, 'state')], { ...process.env, BERTH_RUN_DIR: runDir });
    expect(await waitServing(`unix://${path.join(runDir, 'scheduler.sock')}`), svc.output()).toBe('SERVING');
  });

  it.each([
    [['--listen', 'not-an-address'], /--listen: expected unix:\/\/\/absolute\/path or host:port/],
    [['--no-such-flag'], /Unknown option '--no-such-flag'/],
    [['--listen', '127.0.0.1:0', '--state-dir', '/tmp'], /TCP listener 127\.0\.0\.1:0 needs TLS/],
  ])('exits 2 with a clear error for %j', async (args, re) => {
    svc = startServiceProcess(bin, args as string[]);
    const exit = await svc.exited;
    expect(exit.code).toBe(2);
    expect(svc.output()).toMatch(re);
    expect(svc.output()).toMatch(/^berth-scheduler: error: /m);
  });
});
