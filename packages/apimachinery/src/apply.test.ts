// The three-way strategic merge of client-side apply, as tables: (last applied, new manifest,
// live) -> merged.
import { describe, expect, it } from 'vitest';
import { threeWayMerge, type Json } from './apply';

const c = (name: string, extra: Record<string, Json> = {}): Json => ({ name, image: `${name}:1`, ...extra });

describe('threeWayMerge', () => {
  const cases: { name: string; original: Json | undefined; modified: Json; live: Json; want: Json }[] = [
    {
      name: 'keeps fields only the server set, writes the manifest',
      original: { spec: { replicas: 1 } },
      modified: { spec: { replicas: 2 } },
      live: { spec: { replicas: 1, defaulted: 'yes' }, status: { phase: 'Running' } },
      want: { spec: { replicas: 2, defaulted: 'yes' }, status: { phase: 'Running' } },
    },
    {
      name: 'removes a field the last manifest set and this one dropped',
      original: { data: { a: '1', b: '2' } },
      modified: { data: { a: '1' } },
      live: { data: { a: '1', b: '2', c: 'theirs' } },
      want: { data: { a: '1', c: 'theirs' } },
    },
    {
      name: 'the manifest wins over another writer on a field it sets',
      original: { data: { a: '1' } },
      modified: { data: { a: '1' } },
      live: { data: { a: 'changed' } },
      want: { data: { a: '1' } },
    },
    {
      name: 'merges containers by name: changes one, keeps server defaults inside, keeps order',
      original: { spec: { containers: [c('web'), c('side')] } },
      modified: { spec: { containers: [c('web', { image: 'web:2' }), c('side')] } },
      live: { spec: { containers: [c('web', { imagePullPolicy: 'IfNotPresent' }), c('side', { imagePullPolicy: 'IfNotPresent' })] } },
      want: { spec: { containers: [c('web', { image: 'web:2', imagePullPolicy: 'IfNotPresent' }), c('side', { imagePullPolicy: 'IfNotPresent' })] } },
    },
    {
      name: 'drops a container the manifest removed, keeps one another writer added',
      original: { spec: { containers: [c('a'), c('b')] } },
      modified: { spec: { containers: [c('a')] } },
      live: { spec: { containers: [c('a'), c('b'), c('injected')] } },
      want: { spec: { containers: [c('a'), c('injected')] } },
    },
    {
      name: 'merges env by name and ports by containerPort inside a container',
      original: { spec: { containers: [c('a', { env: [{ name: 'X', value: '1' }, { name: 'OLD', value: 'o' }], ports: [{ containerPort: 80 }] })] } },
      modified: { spec: { containers: [c('a', { env: [{ name: 'X', value: '2' }, { name: 'NEW', value: 'n' }], ports: [{ containerPort: 80, name: 'http' }, { containerPort: 443 }] })] } },
      live: { spec: { containers: [c('a', { env: [{ name: 'X', value: '1' }, { name: 'OLD', value: 'o' }, { name: 'SIDE', value: 's' }], ports: [{ containerPort: 80, protocol: 'TCP' }] })] } },
      want: { spec: { containers: [c('a', { env: [{ name: 'X', value: '2' }, { name: 'NEW', value: 'n' }, { name: 'SIDE', value: 's' }], ports: [{ containerPort: 80, name: 'http', protocol: 'TCP' }, { containerPort: 443 }] })] } },
    },
    {
      name: 'merges volumes by name and volumeMounts by mountPath',
      original: { spec: { volumes: [{ name: 'v1', emptyDir: {} }], containers: [c('a', { volumeMounts: [{ name: 'v1', mountPath: '/a' }] })] } },
      modified: { spec: { volumes: [{ name: 'v2', emptyDir: {} }], containers: [c('a', { volumeMounts: [{ name: 'v2', mountPath: '/b' }] })] } },
      live: { spec: { volumes: [{ name: 'v1', emptyDir: {} }, { name: 'token', projected: {} }], containers: [c('a', { volumeMounts: [{ name: 'v1', mountPath: '/a' }, { name: 'token', mountPath: '/var/run/secrets' }] })] } },
      want: { spec: { volumes: [{ name: 'v2', emptyDir: {} }, { name: 'token', projected: {} }], containers: [c('a', { volumeMounts: [{ name: 'v2', mountPath: '/b' }, { name: 'token', mountPath: '/var/run/secrets' }] })] } },
    },
    {
      name: 'replaces lists without a merge key (args, tolerations)',
      original: { spec: { args: ['a', 'b'], tolerations: [{ key: 'x' }] } },
      modified: { spec: { args: ['c'], tolerations: [{ key: 'y' }] } },
      live: { spec: { args: ['a', 'b'], tolerations: [{ key: 'x' }, { key: 'server' }] } },
      want: { spec: { args: ['c'], tolerations: [{ key: 'y' }] } },
    },
    {
      name: 'keeps a list without a merge key the manifest did not change (server-added tolerations)',
      original: { spec: { tolerations: [{ key: 'x' }], image: 'a' } },
      modified: { spec: { tolerations: [{ key: 'x' }], image: 'b' } },
      live: { spec: { tolerations: [{ key: 'x' }, { key: 'node.kubernetes.io/not-ready' }], image: 'a' } },
      want: { spec: { tolerations: [{ key: 'x' }, { key: 'node.kubernetes.io/not-ready' }], image: 'b' } },
    },
    {
      name: 'merges finalizers as a set',
      original: { metadata: { finalizers: ['mine/a', 'mine/b'] } },
      modified: { metadata: { finalizers: ['mine/a'] } },
      live: { metadata: { finalizers: ['mine/a', 'mine/b', 'theirs/c'] } },
      want: { metadata: { finalizers: ['mine/a', 'theirs/c'] } },
    },
    {
      name: 'with no last applied manifest, nothing is removed',
      original: undefined,
      modified: { data: { a: '1' } },
      live: { data: { a: '0', b: '2' } },
      want: { data: { a: '1', b: '2' } },
    },
    {
      name: 'a whole list the manifest no longer has is removed',
      original: { spec: { containers: [c('a')], imagePullSecrets: [{ name: 'reg' }] } },
      modified: { spec: { containers: [c('a')] } },
      live: { spec: { containers: [c('a')], imagePullSecrets: [{ name: 'reg' }] } },
      want: { spec: { containers: [c('a')] } },
    },
  ];
  it.each(cases)('$name', ({ original, modified, live, want }) => {
    expect(threeWayMerge(original, modified, live)).toEqual(want);
  });
});
