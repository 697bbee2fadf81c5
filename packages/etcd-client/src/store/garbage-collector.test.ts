// Owner-reference garbage collection on a real etcd, both storage backends: background (the
// default), foreground with blockOwnerDeletion and a dependent's own finalizer, orphan, chains,
// several owners, and references to owners that do not exist.
import { core, store } from '@berth/api';
import { decodeObject, unwrap, type UserInfo } from '@berth/apimachinery';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EtcdWithClients, uniquePrefix, waitUntil } from '../v3/fixture';
import type { StorageBackend } from './backend';
import { EtcdV2Backend } from './backend-v2';
import { EtcdV3Backend } from './backend-v3';
import { GarbageCollector } from './garbage-collector';
import { Registry } from './registry';

const admin: UserInfo = { name: 'admin', groups: ['system:masters', 'system:authenticated'], authenticator: 'test' };

const env = new EtcdWithClients();
beforeAll(() => env.start());
afterAll(() => env.destroy());

describe.each(['v3', 'v2'] as const)('garbage collection on etcd %s', (api) => {
  let reg: Registry;
  let gc: GarbageCollector;
  let prefix: string;
  beforeEach(async () => {
    prefix = uniquePrefix('gc');
    const backend: StorageBackend = api === 'v3' ? new EtcdV3Backend(env.v3) : new EtcdV2Backend(env.v2);
    reg = new Registry(backend, { prefix });
    await reg.start();
    gc = new GarbageCollector(reg, { resources: ['configmaps', 'secrets', 'pods', 'namespaces', 'nodes'], retryMs: 100 });
    gc.start();
  });
  afterEach(async () => {
    await gc.close();
    reg.close();
    if (api === 'v3') await env.v3.delete(prefix, { prefix: true });
    else await env.v2.delete(prefix, { recursive: true }).catch(() => undefined);
  });

  const ref = (o: core.Object, block?: boolean) => {
    const { info, value } = unwrap(o);
    return { apiVersion: info.apiVersion, kind: info.kind, name: value.metadata!.name, uid: value.metadata!.uid, ...(block === undefined ? {} : { blockOwnerDeletion: block }) };
  };
  const cm = (name: string, owners: unknown[] = [], finalizers: string[] = []) => reg.create(decodeObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default', ownerReferences: owners, finalizers } }), admin);
  const exists = async (name: string, resource = 'configmaps', ns = 'default') => {
    try { return await reg.get(store.GetRequest.fromPartial({ resource, namespace: ns, name }), admin); } catch { return undefined; }
  };
  const del = (name: string, propagationPolicy = '', resource = 'configmaps') => reg.delete(store.DeleteRequest.fromPartial({ resource, namespace: 'default', name, propagationPolicy }), admin);
  const gone = (name: string, resource = 'configmaps') => waitUntil(async () => !(await exists(name, resource)), 10_000, `${name} deleted`);

  it('Background (the default): the owner goes at once, then its dependents, down a chain', async () => {
    const owner = await cm('owner');
    const child = await cm('child', [ref(owner)]);
    await cm('grandchild', [ref(child)]);
    const pod = await reg.create(decodeObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'dep-pod', namespace: 'default', ownerReferences: [ref(owner)] }, spec: { containers: [{ name: 'c', image: 'busybox:1.36' }] } }), admin);
    await cm('bystander');
    await del('owner');
    expect(await exists('owner')).toBeUndefined();
    await gone('child');
    await gone('grandchild');
    await gone('dep-pod', 'pods');
    expect(pod.pod!.metadata!.uid).toBeTruthy();
    expect(await exists('bystander')).toBeDefined();
  });

  it('keeps a dependent that still has a live owner, dropping the dangling reference', async () => {
    const a = await cm('owner-a');
    const b = await cm('owner-b');
    await cm('shared', [ref(a), ref(b)]);
    await del('owner-a');
    await waitUntil(async () => (await exists('shared'))?.configMap!.metadata!.ownerReferences.length === 1, 10_000, 'dangling reference removed');
    expect((await exists('shared'))!.configMap!.metadata!.ownerReferences.map((r) => r.name)).toEqual(['owner-b']);
    await del('owner-b');
    await gone('shared');
  });

  it('deletes a dependent whose owner never existed or was replaced (uid differs)', async () => {
    // An owner of a kind this store does not serve cannot be checked: the dependent stays.
    await cm('foreign-owner', [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-5d8f', uid: '11111111-0000-0000-0000-000000000000' }]);
    await cm('orphan-ref', [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'nobody', uid: '00000000-0000-0000-0000-000000000000' }]);
    await gone('orphan-ref');
    expect(await exists('foreign-owner')).toBeDefined();
    const old = await cm('same-name');
    await del('same-name');
    await cm('same-name'); // a new object of the same name is not the owner
    await cm('stale', [ref(old)]);
    await gone('stale');
    expect(await exists('same-name')).toBeDefined();
  });

  it('Foreground: dependents first, the owner waits for blocking ones (and their finalizers)', async () => {
    const owner = await cm('fg-owner');
    await cm('fg-blocker', [ref(owner, true)], ['example.com/hold']);
    await cm('fg-free', [ref(owner, false)]);
    const marked = await del('fg-owner', 'Foreground');
    expect(marked.configMap!.metadata!.deletionTimestamp).not.toBe('');
    expect(marked.configMap!.metadata!.finalizers).toContain('foregroundDeletion');
    await gone('fg-free');
    // The blocking dependent is marked for deletion but held by its finalizer; so is the owner.
    await waitUntil(async () => !!(await exists('fg-blocker'))?.configMap!.metadata!.deletionTimestamp, 10_000, 'blocker marked');
    await new Promise((r) => setTimeout(r, 300));
    expect((await exists('fg-owner'))?.configMap!.metadata!.finalizers).toEqual(['foregroundDeletion']);
    const blocker = (await exists('fg-blocker'))!;
    blocker.configMap!.metadata!.finalizers = blocker.configMap!.metadata!.finalizers.filter((f) => f !== 'example.com/hold');
    await reg.update(blocker, admin);
    await gone('fg-blocker');
    await gone('fg-owner');
  });

  it('Orphan: the owner goes, its dependents stay without the reference', async () => {
    const owner = await cm('or-owner');
    const other = await cm('or-other');
    await cm('or-dep', [ref(owner)]);
    await cm('or-dep2', [ref(owner), ref(other)]);
    const marked = await del('or-owner', 'Orphan');
    expect(marked.configMap!.metadata!.finalizers).toEqual(['orphan']);
    await gone('or-owner');
    expect((await exists('or-dep'))!.configMap!.metadata!.ownerReferences).toEqual([]);
    expect((await exists('or-dep2'))!.configMap!.metadata!.ownerReferences.map((r) => r.name)).toEqual(['or-other']);
    await new Promise((r) => setTimeout(r, 300));
    expect(await exists('or-dep')).toBeDefined();
  });

  it('refuses an unknown propagation policy, naming the field', async () => {
    await cm('pp');
    await expect(del('pp', 'Sideways')).rejects.toThrow(/propagationPolicy: Unsupported value: "Sideways"/);
  });
});
