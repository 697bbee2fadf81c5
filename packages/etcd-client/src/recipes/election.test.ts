// Election and mutex recipes on a real etcd, v3 and v2. The election test runs each candidate
// as its own Node process and kills the leader with SIGKILL: the next candidate must take over
// once the dead leader's lease (v3) or key TTL (v2) runs out, and never two at once.
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EtcdCluster } from '@berth/common';
import { EtcdV2Client, EtcdV2Mutex, EtcdV3Client, EtcdV3Election, EtcdV3Mutex, leaderOf, observeLeader, v2LeaderOf } from '..';
import { startEtcd, uniquePrefix, waitUntil } from '../v3/fixture';

// The children load only the client and recipe modules (not the service), so they need
// nothing but this package's own build.
const dist = path.resolve(__dirname, '..', '..', 'dist');
let etcd: EtcdCluster;
const children = new Set<ChildProcess>();
beforeAll(async () => {
  etcd = await startEtcd();
});
afterEach(() => {
  for (const ch of children) ch.kill('SIGKILL');
  children.clear();
});
afterAll(async () => {
  await etcd?.destroy();
});

interface Candidate {
  name: string;
  proc: ChildProcess;
  ledAt?: number;
}

function candidate(kind: 'v2' | 'v3', key: string, name: string, events: string[]): Candidate {
  const script = kind === 'v3'
    ? `const m = { ...require(${JSON.stringify(`${dist}/v3`)}), ...require(${JSON.stringify(`${dist}/recipes`)}) };
       const c = new m.EtcdV3Client({ endpoints: ${JSON.stringify(etcd.endpoints)} });
       const e = new m.EtcdV3Election(c, ${JSON.stringify(key)}, { ttl: 2 });
       e.campaign(${JSON.stringify(name)}).then(() => console.log('LEADER'), (err) => { console.error(err); process.exit(1); });`
    : `const m = { ...require(${JSON.stringify(`${dist}/v2`)}), ...require(${JSON.stringify(`${dist}/recipes`)}) };
       const c = new m.EtcdV2Client({ endpoints: ${JSON.stringify(etcd.endpoints)} });
       const e = new m.EtcdV2Election(c, ${JSON.stringify(key)}, { ttl: 2 });
       e.campaign(${JSON.stringify(name)}).then(() => console.log('LEADER'), (err) => { console.error(err); process.exit(1); });`;
  const proc = spawn(process.execPath, ['-e', `${script}\nsetInterval(() => {}, 1 << 30);`], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(proc);
  const cand: Candidate = { name, proc };
  proc.stdout!.on('data', (d: Buffer) => {
    if (d.toString().includes('LEADER')) {
      cand.ledAt = Date.now();
      events.push(name);
    }
  });
  return cand;
}

describe.each(['v3', 'v2'] as const)('%s election', (kind) => {
  it('fails over to another candidate when the leader process is killed -9', async () => {
    const key = uniquePrefix(`elect-${kind}`);
    const events: string[] = [];
    const cands = ['a', 'b', 'c'].map((n) => candidate(kind, key, n, events));
    const v3 = new EtcdV3Client({ endpoints: etcd.endpoints });
    const v2 = new EtcdV2Client({ endpoints: etcd.endpoints });
    const currentLeader = async () => (kind === 'v3' ? (await leaderOf(v3, key))?.value.toString() : await v2LeaderOf(v2, key));
    try {
      await waitUntil(() => events.length === 1, 15_000, 'a first leader');
      const first = cands.find((c) => c.name === events[0])!;
      expect(await currentLeader()).toBe(first.name);
      await new Promise((r) => setTimeout(r, 1500)); // the others keep waiting
      expect(events).toHaveLength(1);
      const killedAt = Date.now();
      first.proc.kill('SIGKILL');
      await waitUntil(() => events.length === 2, 20_000, 'a second leader');
      const second = cands.find((c) => c.name === events[1])!;
      expect(second.name).not.toBe(first.name);
      // Not before the dead leader's TTL (2 s) could run out... and well within a few TTLs.
      expect(second.ledAt! - killedAt).toBeGreaterThan(1000);
      expect(second.ledAt! - killedAt).toBeLessThan(15_000);
      expect(await currentLeader()).toBe(second.name);
      await new Promise((r) => setTimeout(r, 1500));
      expect(events).toHaveLength(2); // the third still waits: one leader at a time
    } finally {
      v3.close();
      v2.close();
    }
  });
});

describe('v3 election in-process', () => {
  it('campaign, observe, proclaim, resign hands over in order', async () => {
    const key = uniquePrefix('elect-inproc');
    const clients = [0, 1].map(() => new EtcdV3Client({ endpoints: etcd.endpoints }));
    const watcher = new EtcdV3Client({ endpoints: etcd.endpoints });
    const ac = new AbortController();
    try {
      const seen: (string | undefined)[] = [];
      const observing = (async () => { for await (const v of observeLeader(watcher, key, ac.signal)) seen.push(v); })().catch(() => undefined);
      const a = new EtcdV3Election(clients[0], key, { ttl: 5 });
      const b = new EtcdV3Election(clients[1], key, { ttl: 5 });
      await a.campaign('a');
      let bLeads = false;
      const bCampaign = b.campaign('b').then(() => { bLeads = true; });
      await new Promise((r) => setTimeout(r, 300));
      expect(bLeads).toBe(false);
      await a.proclaim('a2');
      expect((await a.leader())?.value.toString()).toBe('a2');
      await a.resign();
      await bCampaign;
      expect((await b.leader())?.value.toString()).toBe('b');
      await waitUntil(() => seen.includes('b'), 5000, 'observer to see b');
      expect(seen.filter((v) => v !== undefined)).toEqual(['a', 'a2', 'b']);
      await b.resign();
      await waitUntil(() => seen[seen.length - 1] === undefined, 5000, 'observer to see nobody');
    } finally {
      ac.abort();
      for (const c of clients) c.close();
      watcher.close();
    }
  });
});

describe.each(['v3', 'v2'] as const)('%s mutex', (kind) => {
  it('5 clients incrementing under the lock lose no update and never overlap', async () => {
    const key = uniquePrefix(`mutex-${kind}`);
    const counterKey = `${key}-counter`;
    const v3 = new EtcdV3Client({ endpoints: etcd.endpoints });
    await v3.put(counterKey, '0');
    let inside = 0, maxInside = 0;
    const workers = Array.from({ length: 5 }, async () => {
      const c3 = new EtcdV3Client({ endpoints: etcd.endpoints });
      const c2 = new EtcdV2Client({ endpoints: etcd.endpoints });
      const m = kind === 'v3' ? new EtcdV3Mutex(c3, key, { ttl: 5 }) : new EtcdV2Mutex(c2, key, { ttl: 5 });
      try {
        for (let i = 0; i < 4; i++) {
          await m.lock();
          inside++;
          maxInside = Math.max(maxInside, inside);
          const cur = Number((await c3.get(counterKey))!.value.toString());
          await new Promise((r) => setTimeout(r, 5));
          await c3.put(counterKey, String(cur + 1));
          inside--;
          await m.unlock();
        }
      } finally {
        c3.close();
        c2.close();
      }
    });
    try {
      await Promise.all(workers);
      expect(Number((await v3.get(counterKey))!.value.toString())).toBe(20);
      expect(maxInside).toBe(1);
    } finally {
      v3.close();
    }
  });
});
