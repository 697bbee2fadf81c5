// Environment resolution: $(VAR) expansion, downward API fields and resources, configMap and
// secret keys and envFrom, with the errors (CreateContainerConfigError) naming the reference.
import { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { ContainerConfigError, expandCommand, expandVars, resolveEnv, type EnvContext } from './env';
import { MemoryConfigs } from './testing/memory-configs';

const pod = core.Pod.fromPartial({
  metadata: { name: 'web-0', namespace: 'shop', uid: 'u-1', labels: { app: 'web', tier: 'front' }, annotations: { 'example.com/owner': 'team-a' } },
  spec: {
    nodeName: 'node-a',
    serviceAccountName: 'builder',
    containers: [
      { name: 'app', resources: { requests: { cpu: '250m', memory: '64Mi' }, limits: { cpu: '1500m', memory: '128Mi' } } },
      { name: 'side', resources: { requests: { cpu: '100m' } } },
    ],
  },
});

const configs = new MemoryConfigs()
  .configMap('shop', 'settings', { LOG_LEVEL: 'debug', 'bad key': 'x', MODE: 'fast' }, { BLOB: Buffer.from('bin') })
  .secret('shop', 'db', { password: 's3cr3t', user: 'admin' });

const ctx: EnvContext = { pod, configs, podIPs: ['10.244.1.5', 'fd00::5'], hostIPs: ['10.0.0.2'], nodeAllocatable: { cpu: '2', memory: '8Gi' } };
const env = (c: Partial<core.Container>) => resolveEnv(ctx, core.Container.fromPartial({ name: 'app', ...c, resources: pod.spec!.containers[0].resources }), 'spec.containers[0]');
const asMap = (r: { env: { name: string; value: string }[] }) => Object.fromEntries(r.env.map((e) => [e.name, e.value]));

describe('expandVars', () => {
  const vars = new Map([['A', 'x'], ['B', 'y']]);
  it.each([
    ['$(A)-$(B)', 'x-y'], ['$$(A)', '$(A)'], ['$(C)', '$(C)'], ['$(A', '$(A'], ['a$b', 'a$b'], ['$', '$'], ['$$$(A)', '$x'],
  ])('%s -> %s', (i, o) => expect(expandVars(i, vars)).toBe(o));
});

describe('resolveEnv', () => {
  it('resolves every downward-API field', async () => {
    const fields = ['metadata.name', 'metadata.namespace', 'metadata.uid', "metadata.labels['app']", "metadata.annotations['example.com/owner']", 'spec.nodeName', 'spec.serviceAccountName', 'status.hostIP', 'status.podIP', 'status.podIPs', "metadata.labels['missing']"];
    const r = await env({ env: fields.map((f, i) => ({ name: `F${i}`, valueFrom: { fieldRef: { fieldPath: f } } })) });
    expect(r.env.map((e) => e.value)).toEqual(['web-0', 'shop', 'u-1', 'web', 'team-a', 'node-a', 'builder', '10.0.0.2', '10.244.1.5', '10.244.1.5,fd00::5', '']);
  });

  it.each([
    [{ resource: 'limits.cpu' }, '2'],
    [{ resource: 'limits.cpu', divisor: '1m' }, '1500'],
    [{ resource: 'requests.cpu', divisor: '1m' }, '250'],
    [{ resource: 'requests.cpu' }, '1'],
    [{ resource: 'limits.memory' }, String(128 * 1024 * 1024)],
    [{ resource: 'limits.memory', divisor: '1Mi' }, '128'],
    [{ resource: 'limits.memory', containerName: 'side', divisor: '1Gi' }, '8'],
    [{ resource: 'limits.cpu', containerName: 'side' }, '2'],
    [{ resource: 'requests.memory', containerName: 'side' }, '0'],
  ])('resourceFieldRef %j = %s', async (sel, want) => {
    const r = await env({ env: [{ name: 'R', valueFrom: { resourceFieldRef: sel } }] });
    expect(r.env).toEqual([{ name: 'R', value: want }]);
  });

  it('takes configMap and secret keys, envFrom with a prefix, and expands references in order', async () => {
    const r = await env({
      envFrom: [{ prefix: 'CFG_', configMapRef: { name: 'settings' } }, { secretRef: { name: 'db' } }],
      env: [
        { name: 'LEVEL', valueFrom: { configMapKeyRef: { name: 'settings', key: 'LOG_LEVEL' } } },
        { name: 'PASS', valueFrom: { secretKeyRef: { name: 'db', key: 'password' } } },
        { name: 'DSN', value: 'postgres://$(user):$(PASS)@db/$(POD)?level=$(LEVEL)' },
        { name: 'POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
        { name: 'OPT', valueFrom: { configMapKeyRef: { name: 'nope', key: 'x', optional: true } } },
        { name: 'OPT2', valueFrom: { secretKeyRef: { name: 'db', key: 'nope', optional: true } } },
        { name: 'MODE', value: 'override-$(CFG_MODE)' },
      ],
    });
    const m = asMap(r);
    expect(m).toMatchObject({ CFG_LOG_LEVEL: 'debug', CFG_MODE: 'fast', CFG_BLOB: 'bin', user: 'admin', password: 's3cr3t', LEVEL: 'debug', PASS: 's3cr3t', POD: 'web-0', MODE: 'override-fast' });
    // POD is defined after DSN: the reference stays as written, like Kubernetes.
    expect(m.DSN).toBe('postgres://admin:s3cr3t@db/$(POD)?level=debug');
    expect('OPT' in m || 'OPT2' in m).toBe(false);
    expect(r.skipped).toEqual(['CFG_bad key']);
    const cmd = expandCommand(core.Container.fromPartial({ command: ['sh', '-c'], args: ['echo $(LEVEL) $$(LEVEL)'] }), r.env);
    expect(cmd).toEqual({ command: ['sh', '-c'], args: ['echo debug $(LEVEL)'] });
  });

  it.each([
    [{ env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'missing', key: 'k' } } }] }, 'spec.containers[0].env[0].valueFrom.configMapKeyRef: configmap "missing" not found'],
    [{ env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'settings', key: 'k' } } }] }, "spec.containers[0].env[0].valueFrom.configMapKeyRef: couldn't find key k in ConfigMap shop/settings"],
    [{ env: [{ name: 'X', valueFrom: { secretKeyRef: { name: 'db', key: 'token' } } }] }, "spec.containers[0].env[0].valueFrom.secretKeyRef: couldn't find key token in Secret shop/db"],
    [{ envFrom: [{ secretRef: { name: 'gone' } }] }, 'spec.containers[0].envFrom[0].secretRef: secret "gone" not found'],
    [{ env: [{ name: 'X', valueFrom: { fieldRef: { fieldPath: 'spec.hostname' } } }] }, /spec\.containers\[0\]\.env\[0\]\.valueFrom\.fieldRef\.fieldPath: unsupported value "spec\.hostname"/],
    [{ env: [{ name: 'X', valueFrom: { resourceFieldRef: { resource: 'limits.gpu' } } }] }, /resourceFieldRef\.resource: unsupported value "limits\.gpu"/],
    [{ env: [{ name: 'X', valueFrom: { resourceFieldRef: { resource: 'limits.cpu', divisor: '0' } } }] }, /resourceFieldRef\.divisor: must be greater than 0/],
  ])('fails with CreateContainerConfigError: %#', async (c, msg) => {
    const err = await env(c as Partial<core.Container>).catch((e) => e);
    expect(err).toBeInstanceOf(ContainerConfigError);
    expect(err.reason).toBe('CreateContainerConfigError');
    if (typeof msg === 'string') expect(err.message).toBe(msg);
    else expect(err.message).toMatch(msg);
  });
});
