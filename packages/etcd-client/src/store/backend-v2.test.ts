// The v2 backend's multi-key commits on a real etcd (v2 API): serialised by the commit lock,
// and a commit left half-done by a writer that died is rolled forward (every guard still
// holds) or back (someone wrote one of its keys since) by the next multi-key commit.
import type { EtcdCluster } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdV2Client } from '../v2';
import { startEtcd } from '../v3/fixture';
import { EtcdV2Backend } from './backend-v2';
import { randomBytes } from 'node:crypto';

let etcd: EtcdCluster;
let client: EtcdV2Client;
beforeAll(async () => {
  etcd = await startEtcd({ enableV2: true });
  client = new EtcdV2Client({ endpoints: etcd.endpoints });
});
afterAll(async () => {
  client?.close();
  await etcd?.destroy();
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('EtcdV2Backend multi-key commits', () => {
  it('serialises concurrent read-modify-write commits of a shared counter exactly', async () => {
    const root = `/gc${randomBytes(4).toString('hex')}`;
    try {
      // Two backends, as two berth-etcd-client processes would have.
      const backends = [new EtcdV2Backend(client), new EtcdV2Backend(new EtcdV2Client({ endpoints: etcd.endpoints }))];
      const counter = `${root}/counters/c`;
      await backends[0].commit([{ key: counter, modRevision: 0 }], [{ key: counter, value: Buffer.from('0') }]);
      const bump = async (b: EtcdV2Backend, i: number) => {
        for (;;) {
          const cur = (await b.get(counter)).kv!;
          const obj = `${root}/objs/o${i}`;
          const r = await b.commit([{ key: obj, modRevision: 0 }, { key: counter, modRevision: cur.modRevision }], [{ key: obj, value: Buffer.from('x') }, { key: counter, value: Buffer.from(String(Number(cur.value.toString()) + 1)) }]);
          if (r.ok) return;
        }
      };
      await Promise.all(Array.from({ length: 12 }, (_, i) => bump(backends[i % 2], i)));
      expect((await backends[0].get(counter)).kv!.value.toString()).toBe('12');
      expect((await backends[0].list(`${root}/objs/`)).kvs).toHaveLength(12);
      (backends[1].client as EtcdV2Client).close();
    } finally {
      await client.delete(root, { recursive: true }).catch(() => undefined);
    }
  });

  it('rolls a dead writer\'s commit forward when its guards still hold, back when they do not', async () => {
    const root = `/rc${randomBytes(4).toString('hex')}`;
    const backend = new EtcdV2Backend(client);
    try {
      const quota = `${root}/resourcequotas/ns/q`;
      const created = await client.set(quota, b64('used=0'));
      // Dead writer 1: charged the quota, died before creating the pod.
      const charged = await client.set(quota, b64('used=1'), { prevIndex: created.node.modifiedIndex });
      await client.set(`${root}/.commit-intent`, JSON.stringify({ writes: [
        { key: `${root}/pods/ns/p1`, value: b64('pod p1'), guard: 0, before: null },
        { key: quota, value: b64('used=1'), guard: created.node.modifiedIndex, before: b64('used=0') },
      ] }));
      void charged;
      await backend.commit([{ key: `${root}/configmaps/ns/a`, modRevision: 0 }, { key: `${root}/configmaps/ns/b`, modRevision: 0 }], [{ key: `${root}/configmaps/ns/a`, value: Buffer.from('a') }, { key: `${root}/configmaps/ns/b`, value: Buffer.from('b') }]);
      expect((await backend.get(`${root}/pods/ns/p1`)).kv?.value.toString()).toBe('pod p1');
      expect((await backend.get(quota)).kv?.value.toString()).toBe('used=1');
      await expect(client.get(`${root}/.commit-intent`)).rejects.toThrow();

      // Dead writer 2: charged the quota for p2, but p2 was created by someone else since.
      const q1 = (await client.get(quota)).node.modifiedIndex;
      await client.set(quota, b64('used=2'), { prevIndex: q1 });
      await client.set(`${root}/pods/ns/p2`, b64('someone else\'s p2'));
      await client.set(`${root}/.commit-intent`, JSON.stringify({ writes: [
        { key: `${root}/pods/ns/p2`, value: b64('pod p2'), guard: 0, before: null },
        { key: quota, value: b64('used=2'), guard: q1, before: b64('used=1') },
      ] }));
      await backend.commit([{ key: `${root}/configmaps/ns/c`, modRevision: 0 }, { key: `${root}/configmaps/ns/d`, modRevision: 0 }], [{ key: `${root}/configmaps/ns/c`, value: Buffer.from('c') }, { key: `${root}/configmaps/ns/d`, value: Buffer.from('d') }]);
      expect((await backend.get(quota)).kv?.value.toString()).toBe('used=1'); // the charge is undone
      expect((await backend.get(`${root}/pods/ns/p2`)).kv?.value.toString()).toBe('someone else\'s p2');
      expect((await backend.get(`${root}/configmaps/ns/d`)).kv?.value.toString()).toBe('d');
    } finally {
      await client.delete(root, { recursive: true }).catch(() => undefined);
    }
  });
});
