// EtcdV2Client on a real 3-member etcd cluster: kill -9 of the member the client is attached to
// during writes and a watch — writes go on, the watcher sees every write exactly once — and the
// raft error a member without quorum answers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdCluster } from '@berth/common';
import { EtcdError, EtcdV2Client } from '..';
import { startEtcd, uniquePrefix, untilConnected, waitUntil } from '../v3/fixture';

let etcd: EtcdCluster;
beforeAll(async () => {
  etcd = await startEtcd({ members: 3 });
});
afterAll(async () => {
  await etcd?.destroy();
});

describe('EtcdV2Client on a 3-member cluster', () => {
  it('adds a member, updates its peer URL and removes it', async () => {
    const { freePort } = await import('@berth/common');
    const c = new EtcdV2Client({ endpoints: etcd.endpoints });
    try {
      const url = `http://127.0.0.1:${await freePort()}`;
      const m = await untilConnected(() => c.addMember([url]));
      expect(m.peerURLs).toEqual([url]);
      expect(await c.listMembers()).toHaveLength(4);
      const url2 = `http://127.0.0.1:${await freePort()}`;
      await c.updateMember(m.id, [url2]);
      expect((await c.listMembers()).find((x) => x.id === m.id)?.peerURLs).toEqual([url2]);
      await c.removeMember(m.id);
      expect(await c.listMembers()).toHaveLength(3);
      const leader = await c.leader();
      expect((await c.listMembers()).map((x) => x.id)).toContain(leader.id);
    } finally {
      c.close();
    }
  });

  it('kill -9 of the attached member during writes and a watch', async () => {
    const p = uniquePrefix('v2kill');
    const c = new EtcdV2Client({ endpoints: etcd.endpoints, headerTimeoutMs: 3000 });
    const attached = etcd.endpoints.indexOf(c.activeEndpoint);
    const start = await c.set(`${p}/start`, 'x');
    const w = c.watch(p, { recursive: true, afterIndex: start.node.modifiedIndex, livenessIntervalMs: 1000 });
    const seen: { value: string; index: number }[] = [];
    const reading = (async () => { for await (const r of w) seen.push({ value: r.node.value ?? '', index: r.node.modifiedIndex }); })();
    const acked = new Set<string>();
    let okAfterKill = 0, failed = 0;
    try {
      for (let i = 0; i < 200; i++) {
        if (i === 70) await etcd.kill(attached);
        try {
          await c.set(`${p}/k${i % 10}`, String(i));
          acked.add(String(i));
          if (i >= 70) okAfterKill++;
        } catch {
          failed++;
        }
      }
      // Only writes in flight at the kill or during the election after it may fail.
      expect(okAfterKill).toBeGreaterThanOrEqual(110);
      expect(failed).toBeLessThanOrEqual(20);
      expect(c.activeEndpoint).not.toBe(etcd.endpoints[attached]);
      // One more acknowledged write marks the end: once the watcher saw it, it saw everything.
      await c.set(`${p}/end`, 'end');
      await waitUntil(() => seen.some((s) => s.value === 'end'), 20_000, 'the watcher to catch up');
      const values = seen.map((s) => s.value).filter((v) => v !== 'end');
      expect(new Set(values).size).toBe(values.length); // nothing repeated
      for (let i = 1; i < seen.length; i++) expect(seen[i].index).toBeGreaterThan(seen[i - 1].index);
      for (const v of acked) expect(values).toContain(v); // nothing lost
      for (const v of values) expect(Number(v)).toBeLessThan(200); // only our writes
      expect(w.reconnects).toBeGreaterThanOrEqual(1);
    } finally {
      w.cancel();
      await reading;
      c.close();
      await etcd.restart(attached);
    }
  });

  it('a watcher leaves a paused (SIGSTOP) member and misses nothing', async () => {
    const p = uniquePrefix('v2pause');
    const c = new EtcdV2Client({ endpoints: etcd.endpoints, headerTimeoutMs: 1000 });
    const attached = etcd.endpoints.indexOf(c.activeEndpoint);
    const writer = new EtcdV2Client({ endpoints: etcd.endpoints.filter((_, i) => i !== attached) });
    const start = await writer.set(`${p}/k`, 'start');
    const w = c.watch(p, { recursive: true, afterIndex: start.node.modifiedIndex, livenessIntervalMs: 500 });
    const seen: string[] = [];
    const reading = (async () => { for await (const r of w) seen.push(r.node.value ?? ''); })();
    try {
      await writer.set(`${p}/k`, 'before');
      await waitUntil(() => seen.includes('before'), 10_000, 'the first event');
      etcd.pause(attached);
      for (let i = 0; i < 5; i++) await writer.set(`${p}/k`, `during-${i}`);
      await waitUntil(() => seen.includes('during-4'), 15_000, 'the watcher to move off the paused member');
      expect(seen).toEqual(['before', 'during-0', 'during-1', 'during-2', 'during-3', 'during-4']);
      expect(w.reconnects).toBeGreaterThanOrEqual(1);
    } finally {
      etcd.resume(attached);
      w.cancel();
      await reading;
      c.close();
      writer.close();
    }
    await etcd.waitHealthy(attached);
  });

  it('a member that lost quorum answers a raft error (300/301); writes resume after restart', async () => {
    const survivor = 0;
    const c = new EtcdV2Client({ endpoints: [etcd.endpoints[survivor]], headerTimeoutMs: 15_000 });
    const k = `${uniquePrefix('quorum')}/k`;
    try {
      await etcd.kill(1);
      await etcd.kill(2);
      const err = await c.set(k, 'v').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EtcdError);
      expect([300, 301]).toContain((err as EtcdError).errorCode);
    } finally {
      await Promise.all([etcd.restart(1, false), etcd.restart(2, false)]);
      await Promise.all([0, 1, 2].map((i) => etcd.waitHealthy(i)));
    }
    await c.set(k, 'v');
    expect((await c.get(k, { quorum: true })).node.value).toBe('v');
    c.close();
  });
});
