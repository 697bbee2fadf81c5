// berth's kubectl-like commands against a real berth-etcd-client process on a real etcd, over
// its unix socket and over mutual TLS with certificates from `berth certs`: output checked
// against expected text, exit codes as kubectl's.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdCluster, freePort, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreClient, decodeObject, generateKeyAndCsr } from '@berth/apimachinery';
import { certSubject } from './certs';
import { runKubectl, type Io } from './kubectl';
import { writeAdminConfig } from './kubeconfig';

const bin = require.resolve('@berth/etcd-client/dist/bin/berth-etcd-client.js');
const fixtures = path.dirname(require.resolve('@berth/apimachinery/package.json')) + '/src/testdata';

let dir: string;
let etcd: EtcdCluster;
let svc: ServiceProcess;
let tlsPort: number;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cli-'));
  etcd = await EtcdCluster.start({ dataRoot: path.join(dir, 'etcd'), removeDataOnDestroy: true });
  const certs = await run(['certs', '--dir', path.join(dir, 'pki'), '--node', 'node-1'], { HOME: dir });
  expect(certs.code, certs.err).toBe(0);
  fs.writeFileSync(path.join(dir, 'tokens.csv'), 'bob-token-0123456789,bob,uid-bob,"team"\n', { mode: 0o600 });
  tlsPort = await freePort();
  const pki = path.join(dir, 'pki');
  svc = startServiceProcess(bin, ['--listen', `unix://${path.join(dir, 'run', 'etcd-client.sock')}`, '--state-dir', path.join(dir, 'state'),
    '--etcd-endpoints', etcd.endpoints.join(','), '--etcd-health-interval-ms', '200', '--secure-listen', `127.0.0.1:${tlsPort}`,
    '--client-ca-file', path.join(pki, 'ca.crt'), '--tls-cert-file', path.join(pki, 'etcd-client.crt'), '--tls-private-key-file', path.join(pki, 'etcd-client.key'),
    '--token-auth-file', path.join(dir, 'tokens.csv')]);
  expect(await waitServing(`unix://${path.join(dir, 'run', 'etcd-client.sock')}`, 30_000), svc.output()).toBe('SERVING');
  const conf = writeAdminConfig({ stateDir: dir, runDir: path.join(dir, 'run'), tcp: { server: `127.0.0.1:${tlsPort}`, ca: path.join(pki, 'ca.crt'), cert: path.join(pki, 'admin.crt'), key: path.join(pki, 'admin.key') } });
  env = { HOME: dir, BERTH_KUBECONFIG: conf };
}, 90_000);

afterAll(async () => {
  await svc?.stop();
  await etcd?.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function run(args: string[], extraEnv: NodeJS.ProcessEnv = {}, stdin = '', signal?: AbortSignal, onOut?: (all: string) => void): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = { stdout: (s) => { out += s; onOut?.(out); }, stderr: (s) => { err += s; }, env: { ...env, ...extraEnv }, stdin: async () => stdin, now: () => Date.now(), signal };
  const [cmd, ...rest] = args;
  const code = await runKubectl(io, cmd, rest);
  return { code, out, err };
}
const ages = (s: string) => s.replace(/\b\d+(s|m\d*s?)\b(?=\s*$|\s{3})/gm, '<age>');

describe('berth api-resources and --help', () => {
  it('lists the kinds the store serves', async () => {
    const r = await run(['api-resources']);
    expect(r.out.split('\n')[0]).toMatch(/^NAME\s+SHORTNAMES\s+APIVERSION\s+NAMESPACED\s+KIND$/);
    expect(r.out).toMatch(/\npods\s+po\s+v1\s+true\s+Pod\n/);
    expect(r.out).toMatch(/\nclusterrolebindings\s+rbac.authorization.k8s.io\/v1\s+false\s+ClusterRoleBinding\n/);
    expect((await run(['api-resources', '--namespaced=false', '-o', 'name'])).out).toBe('nodes\nnamespaces\npriorityclasses.scheduling.k8s.io\nclusterroles.rbac.authorization.k8s.io\nclusterrolebindings.rbac.authorization.k8s.io\ncertificatesigningrequests.certificates.k8s.io\n');
  });
  it('prints usage with --help', async () => {
    const r = await run(['get', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage:\n  berth get TYPE/);
  });
});

describe('berth certs', () => {
  it('made a CA and component certificates with private keys 0600', () => {
    const pki = path.join(dir, 'pki');
    for (const f of ['ca.key', 'etcd-client.key', 'admin.key', 'scheduler.key', 'node-node-1.key']) expect(fs.statSync(path.join(pki, f)).mode & 0o777).toBe(0o600);
    expect(certSubject(path.join(pki, 'admin.crt'))).toMatchObject({ cn: 'admin', groups: ['system:masters'] });
    expect(certSubject(path.join(pki, 'node-node-1.crt'))).toMatchObject({ cn: 'system:node:node-1', groups: ['system:nodes'] });
  });
});

describe('berth apply / get / describe / delete', () => {
  it('applies a directory of manifests: created, then unchanged', async () => {
    const r = await run(['apply', '-f', fixtures]);
    expect(r.err).toBe('');
    expect(r.out).toBe([
      'namespace/shop created', 'configmap/game-demo created', 'secret/dotfile-secret created',
      'pod/with-affinity created', 'pod/goproxy created', 'pod/frontend created', 'pod/nginx created', '',
    ].join('\n'));
    expect(r.code).toBe(0);
    const again = await run(['apply', '-f', path.join(fixtures, 'pod-resources.yaml')]);
    expect(again.out).toBe('pod/frontend unchanged\n');
  });

  it('reports a changed manifest as configured', async () => {
    const text = fs.readFileSync(path.join(fixtures, 'pod-tolerations.yaml'), 'utf8').replace('image: nginx\n', 'image: nginx:1.27\n');
    const r = await run(['apply', '-f', '-'], {}, text);
    expect([r.code, r.out, r.err]).toEqual([0, 'pod/nginx configured\n', '']);
    const y = await run(['get', 'pod', 'nginx', '-o', 'yaml']);
    expect(y.out).toMatch(/^apiVersion: v1\nkind: Pod\n/);
    expect(y.out).toContain('image: nginx:1.27');
  });

  it('applies with a three-way strategic merge: list items merge by key, other writers\' items stay', async () => {
    const node = (taints: string[], labels: Record<string, string>) => `apiVersion: v1\nkind: Node\nmetadata:\n  name: apply-node\n  labels: ${JSON.stringify(labels)}\nspec:\n  taints: [${taints.map((t) => `{key: ${t}, value: "v", effect: NoSchedule}`).join(', ')}]\n`;
    expect((await run(['apply', '-f', '-'], {}, node(['mine/a', 'mine/b'], { tier: 'x', old: 'y' }))).out).toBe('node/apply-node created\n');
    // Another writer adds a taint and a label.
    const live = JSON.parse((await run(['get', 'node', 'apply-node', '-o', 'json'])).out);
    live.spec.taints.push({ key: 'theirs/c', value: 'v', effect: 'NoExecute' });
    live.metadata.labels.theirs = 'z';
    const other = new StoreClient({ target: `unix://${path.join(dir, 'run', 'etcd-client.sock')}` });
    try { await other.update(decodeObject(live)); } finally { other.close(); }
    // Re-apply the manifest: b dropped, d added, a changed; theirs/c and their label stay.
    const again = node(['mine/a', 'mine/d'], { tier: 'w' }).replace('{key: mine/a, value: "v"', '{key: mine/a, value: "v2"');
    expect((await run(['apply', '-f', '-'], {}, again)).out).toBe('node/apply-node configured\n');
    const got = JSON.parse((await run(['get', 'node', 'apply-node', '-o', 'json'])).out);
    expect(got.spec.taints.map((t: { key: string; value: string }) => `${t.key}=${t.value}`)).toEqual(['mine/a=v2', 'mine/d=v', 'theirs/c=v']);
    expect(got.metadata.labels).toEqual({ tier: 'w', theirs: 'z' });
    expect((await run(['apply', '-f', '-'], {}, again)).out).toBe('node/apply-node unchanged\n');
    await run(['delete', 'node', 'apply-node']);
  });

  it('prints pods as a kubectl table', async () => {
    const r = await run(['get', 'pods']);
    expect(r.code).toBe(0);
    expect(ages(r.out)).toBe([
      'NAME            READY   STATUS    RESTARTS   AGE',
      'frontend        0/2     Pending   0          <age>',
      'goproxy         0/1     Pending   0          <age>',
      'nginx           0/1     Pending   0          <age>',
      'with-affinity   0/1     Pending   0          <age>',
      '',
    ].join('\n'));
    const wide = await run(['get', 'pods', '-o', 'wide', '-l', 'env=test']);
    expect(wide.out).toMatch(/^NAME    READY   STATUS    RESTARTS   AGE +IP       NODE     NOMINATED NODE   READINESS GATES\nnginx   0\/1     Pending   0          \d+s +<none>   <none>   <none>           <none>\n$/);
    expect((await run(['get', 'pods', '-o', 'name', '--field-selector', 'metadata.name=goproxy'])).out).toBe('pod/goproxy\n');
    expect((await run(['get', 'configmaps', '-n', 'shop'])).out).toMatch(/^NAME\s+DATA\s+AGE\ngame-demo\s+2\s+\d+s\n$/);
    const all = await run(['get', 'secrets', '-A']);
    expect(all.out).toMatch(/^NAMESPACE\s+NAME\s+TYPE\s+DATA\s+AGE\nshop\s+dotfile-secret\s+Opaque\s+1\s+\d+s\n$/);
  });

  it('says when nothing is found, and names missing objects', async () => {
    expect(await run(['get', 'nodes'])).toEqual({ code: 0, out: '', err: 'No resources found\n' });
    expect(await run(['get', 'pods', '-n', 'kube-public'])).toEqual({ code: 0, out: '', err: 'No resources found in kube-public namespace.\n' });
    expect(await run(['get', 'pod', 'ghost'])).toEqual({ code: 1, out: '', err: 'Error from server (NotFound): pods "ghost" not found\n' });
    expect(await run(['get', 'potatoes'])).toMatchObject({ code: 1, err: 'error: the server doesn\'t have a resource type "potatoes"\nSee \'berth get --help\' for usage.\n' });
    expect(await run(['get', 'pods', '--bogus'])).toMatchObject({ code: 1, err: "error: unknown flag: --bogus\nSee 'berth get --help' for usage.\n" });
    expect((await run(['get', 'pods', '-l', 'app in ('])).err).toMatch(/^Error from server \(BadRequest\): labelSelector: Invalid value: "app in \(": unbalanced "\("/);
  });

  it('refuses bad manifests with the field path and creates nothing', async () => {
    const bad = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: typo}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolcy: Always\n';
    const r = await run(['apply', '-f', '-'], {}, bad);
    expect(r).toEqual({ code: 1, out: '', err: 'error: error parsing stdin (document 2): spec.containers[0].imagePullPolcy: unknown field "imagePullPolcy"\n' });
    expect((await run(['get', 'configmap', 'fine'])).code).toBe(1);
    const invalid = await run(['create', '-f', '-'], {}, 'apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {limits: {cpu: lots}}\n');
    expect(invalid.code).toBe(1);
    expect(invalid.err).toMatch(/^The Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain .*spec.containers\[0\].resources.limits.cpu: Invalid value: "lots": invalid quantity/);
    expect(await run(['create', '-f', path.join(fixtures, 'pod-probes.yaml')])).toEqual({ code: 1, out: '', err: 'Error from server (AlreadyExists): pods "goproxy" already exists\n' });
  });

  it('describes a pod with its events', async () => {
    const ev = `apiVersion: v1
kind: Event
metadata: {name: goproxy.1}
involvedObject: {kind: Pod, name: goproxy, namespace: default}
reason: Scheduled
message: Successfully assigned default/goproxy to node-1
type: Normal
source: {component: default-scheduler}
lastTimestamp: "${new Date().toISOString().replace(/\.\d+Z/, 'Z')}"
`;
    expect((await run(['apply', '-f', '-'], {}, ev)).out).toBe('event/goproxy.1 created\n');
    const d = await run(['describe', 'pod', 'goproxy']);
    expect(d.code).toBe(0);
    const lines = d.out.split('\n');
    expect(lines.slice(0, 4)).toEqual(['Name:             goproxy', 'Namespace:        default', 'Priority:         0', 'Service Account:  default']);
    expect(d.out).toContain('Labels:           test=liveness\n');
    expect(d.out).toContain('    Liveness:       exec [cat /tmp/healthy] delay=5s timeout=1s period=5s #success=1 #failure=3\n');
    expect(d.out).toContain('    Readiness:      http-get http://:liveness-port/healthz delay=3s timeout=1s period=3s #success=1 #failure=3\n');
    expect(d.out).toContain('QoS Class:        BestEffort\n');
    expect(d.out).toContain('Tolerations:      node.kubernetes.io/not-ready:NoExecute op=Exists for 300s\n');
    expect(d.out.slice(d.out.indexOf('Events:'))).toMatch(/^Events:\n  Type\s+Reason\s+Age\s+From\s+Message\n  ----\s+------\s+----\s+----\s+-------\n  Normal\s+Scheduled\s+\d+s\s+default-scheduler\s+Successfully assigned default\/goproxy to node-1\n$/);
  });

  it('watches with -w: the table, then a row per change', async () => {
    const ac = new AbortController();
    let sawNew!: () => void;
    const saw = new Promise<void>((r) => { sawNew = r; });
    const watching = run(['get', 'configmaps', '-n', 'shop', '-w'], {}, '', ac.signal, (o) => { if (/\nwatched\s/.test(o)) sawNew(); });
    await new Promise((r) => setTimeout(r, 500));
    await run(['apply', '-f', '-'], {}, 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched, namespace: shop}\ndata: {a: "1", b: "2"}\n');
    await saw;
    ac.abort();
    const r = await watching;
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^NAME\s+DATA\s+AGE\ngame-demo\s+2\s+\d+s\nwatched\s+2\s+\d+s\n$/);
  });

  it('deletes by name, by selector and from a file', async () => {
    expect(await run(['delete', 'pod', 'with-affinity'])).toEqual({ code: 0, out: 'pod "with-affinity" deleted\n', err: '' });
    expect(await run(['delete', 'pods', '-l', 'test=liveness'])).toEqual({ code: 0, out: 'pod "goproxy" deleted\n', err: '' });
    expect(await run(['delete', '-f', path.join(fixtures, 'pod-resources.yaml'), '--grace-period', '0', '--force'])).toEqual({ code: 0, out: 'pod "frontend" force deleted\n', err: 'Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.\n' });
    expect(await run(['delete', 'pod', 'frontend'])).toEqual({ code: 1, out: '', err: 'Error from server (NotFound): pods "frontend" not found\n' });
    expect((await run(['delete', 'pods'])).err).toBe("error: resource(s) were provided, but no name was specified\nSee 'berth delete --help' for usage.\n");
  });

  it('deletes with --cascade: orphan keeps the dependents, background (the default) takes them', async () => {
    const owner = (n: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${n}}\n`;
    const dep = (n: string, o: { configMap?: { metadata?: { name: string; uid: string } } }) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${n}\n  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: ${o.configMap!.metadata!.name}, uid: ${o.configMap!.metadata!.uid}}]\n`;
    const get = async (n: string) => { const j = JSON.parse((await run(['get', 'configmap', n, '-o', 'json'])).out || 'null'); return j?.kind === 'List' ? null : j; };
    for (const n of ['cascade-keep', 'cascade-take']) {
      await run(['apply', '-f', '-'], {}, owner(n));
      await run(['apply', '-f', '-'], {}, dep(`${n}-dep`, { configMap: { metadata: await get(n).then((j) => j.metadata) } }));
    }
    expect(await run(['delete', 'configmap', 'cascade-keep', '--cascade=orphan'])).toEqual({ code: 0, out: 'configmap "cascade-keep" deleted\n', err: '' });
    expect(await run(['delete', 'configmap', 'cascade-take'])).toEqual({ code: 0, out: 'configmap "cascade-take" deleted\n', err: '' });
    for (let i = 0; i < 100 && ((await get('cascade-take-dep')) || (await get('cascade-keep'))); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await get('cascade-take-dep')).toBeNull();
    expect(await get('cascade-keep')).toBeNull();
    expect((await get('cascade-keep-dep')).metadata.ownerReferences).toBeUndefined();
    expect((await run(['delete', 'configmap', 'x', '--cascade=sideways'])).err).toBe('error: invalid argument "sideways" for "--cascade" flag: must be "background", "foreground", or "orphan"\nSee \'berth delete --help\' for usage.\n');
  });
});

describe('berth get csr / certificate approve|deny', () => {
  it('lists requests with their requester and condition; an administrator approves or denies', async () => {
    const csr = async (name: string) => `apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {name: ${name}}
spec:
  request: ${Buffer.from((await generateKeyAndCsr({ commonName: 'alice', organizations: ['dev'] })).csrPem).toString('base64')}
  signerName: kubernetes.io/kube-apiserver-client
  expirationSeconds: 86400
  usages: [client auth]
`;
    expect((await run(['apply', '-f', '-'], {}, (await csr('alice-1')) + '---\n' + (await csr('alice-2')))).out).toBe('certificatesigningrequest.certificates.k8s.io/alice-1 created\ncertificatesigningrequest.certificates.k8s.io/alice-2 created\n');
    const table = (await run(['get', 'csr'])).out;
    expect(table.split('\n')[0]).toBe('NAME      AGE   SIGNERNAME                            REQUESTOR      REQUESTEDDURATION   CONDITION');
    expect(table.replace(/ +/g, ' ').replace(/ \d+s /g, ' <age> ')).toBe([
      'NAME AGE SIGNERNAME REQUESTOR REQUESTEDDURATION CONDITION',
      'alice-1 <age> kubernetes.io/kube-apiserver-client system:admin 24h Pending',
      'alice-2 <age> kubernetes.io/kube-apiserver-client system:admin 24h Pending',
      '',
    ].join('\n'));
    expect(await run(['certificate', 'approve', 'alice-1'])).toEqual({ code: 0, out: 'certificatesigningrequest.certificates.k8s.io/alice-1 approved\n', err: '' });
    expect(await run(['certificate', 'deny', 'alice-2'])).toEqual({ code: 0, out: 'certificatesigningrequest.certificates.k8s.io/alice-2 denied\n', err: '' });
    expect((await run(['get', 'csr', '--no-headers'])).out).toMatch(/^alice-1 .* Approved\nalice-2 .* Denied\n$/);
    expect(await run(['certificate', 'deny', 'alice-1'])).toEqual({ code: 1, out: '', err: 'error: certificatesigningrequest.certificates.k8s.io/alice-1 is already Approved\n' });
    expect((await run(['certificate', 'approve', 'nope'])).err).toBe('Error from server (NotFound): certificatesigningrequests "nope" not found\n');
    expect((await run(['certificate', 'sign', 'x'])).err).toMatch(/^error: unknown command "sign" for "berth certificate"/);
  });
});

describe('berth auth and config over mutual TLS', () => {
  it('the admin certificate is system:masters', async () => {
    const w = await run(['auth', 'whoami', '--context', 'local-tls']);
    expect(w.out).toBe('ATTRIBUTE   VALUE\nUsername    admin\nGroups      [system:masters system:authenticated]\n');
    expect(await run(['auth', 'can-i', 'delete', 'nodes', '--context', 'local-tls'])).toEqual({ code: 0, out: 'yes\n', err: '' });
  });

  it('a token user has no rights until bound; a node only its own pods', async () => {
    expect((await run(['config', 'set-credentials', 'bob', '--token', 'bob-token-0123456789'])).out).toBe('User "bob" set.\n');
    expect((await run(['config', 'set-context', 'bob', '--cluster', 'local-tls', '--user', 'bob'])).out).toBe('Context "bob" created.\n');
    expect((await run(['auth', 'whoami', '--context', 'bob'])).out).toBe('ATTRIBUTE   VALUE\nUsername    bob\nUID         uid-bob\nGroups      [team system:authenticated]\n');
    expect(await run(['auth', 'can-i', 'list', 'pods', '--context', 'bob'])).toEqual({ code: 1, out: 'no\n', err: '' });
    expect(await run(['get', 'pods', '--context', 'bob'])).toEqual({ code: 1, out: '', err: 'Error from server (Forbidden): pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the namespace "default"\n' });
    const rb = 'apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: team-view}\nsubjects:\n- {kind: Group, apiGroup: rbac.authorization.k8s.io, name: team}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\n';
    expect((await run(['apply', '-f', '-'], {}, rb)).out).toBe('rolebinding.rbac.authorization.k8s.io/team-view created\n');
    expect(await run(['auth', 'can-i', 'list', 'pods', '--context', 'bob'])).toEqual({ code: 0, out: 'yes\n', err: '' });
    expect((await run(['auth', 'can-i', 'get', 'secrets', '--context', 'bob'])).out).toBe('no\n');
    expect((await run(['get', 'pods', '-o', 'name', '--context', 'bob'])).out).toBe('pod/nginx\n');
    // A node certificate reads only the pods bound to it.
    const pki = path.join(dir, 'pki');
    await run(['config', 'set-credentials', 'node-1', '--client-certificate', path.join(pki, 'node-node-1.crt'), '--client-key', path.join(pki, 'node-node-1.key')]);
    await run(['config', 'set-context', 'node-1', '--cluster', 'local-tls', '--user', 'node-1']);
    expect((await run(['get', 'pods', '-A', '--context', 'node-1'])).err).toMatch(/^Error from server \(Forbidden\): pods is forbidden: User "system:node:node-1" cannot list resource "pods" in API group "" at the cluster scope: node "node-1" can only list\/watch pods with fieldSelector spec.nodeName=node-1/);
    expect(await run(['get', 'pods', '-A', '--field-selector', 'spec.nodeName=node-1', '--context', 'node-1'])).toEqual({ code: 0, out: '', err: 'No resources found\n' });
    expect((await run(['get', 'pod', 'nginx', '--context', 'node-1'])).code).toBe(1);
  });

  it('refuses a wrong token and a client without credentials', async () => {
    await run(['config', 'set-credentials', 'eve', '--token', 'not-a-token']);
    await run(['config', 'set-context', 'eve', '--cluster', 'local-tls', '--user', 'eve']);
    expect(await run(['get', 'pods', '--context', 'eve'])).toEqual({ code: 1, out: '', err: 'error: You must be logged in to the server (Unauthorized)\n' });
    await run(['config', 'set-credentials', 'anon']);
    await run(['config', 'set-context', 'anon', '--cluster', 'local-tls', '--user', 'anon']);
    // mTLS: the handshake itself refuses a client without a certificate.
    // TLS, but neither a certificate nor a token: anonymous is refused.
    expect(await run(['get', 'pods', '--context', 'anon'])).toEqual({ code: 1, out: '', err: 'error: You must be logged in to the server (Unauthorized)\n' });
  });

  it('authenticates a bootstrap token stored as a kube-system Secret, and refuses an expired one', async () => {
    const secret = (id: string, expiration: string) => `apiVersion: v1
kind: Secret
metadata: {name: bootstrap-token-${id}, namespace: kube-system}
type: bootstrap.kubernetes.io/token
stringData:
  token-id: ${id}
  token-secret: 0123456789abcdef
  usage-bootstrap-authentication: "true"
  expiration: "${expiration}"
`;
    expect((await run(['apply', '-f', '-'], {}, secret('abcdef', new Date(Date.now() + 3600_000).toISOString()))).code).toBe(0);
    expect((await run(['apply', '-f', '-'], {}, secret('zzzzzz', new Date(Date.now() - 1000).toISOString()))).code).toBe(0);
    await run(['config', 'set-credentials', 'boot', '--token', 'abcdef.0123456789abcdef']);
    await run(['config', 'set-context', 'boot', '--cluster', 'local-tls', '--user', 'boot']);
    expect((await run(['auth', 'whoami', '--context', 'boot'])).out).toBe('ATTRIBUTE   VALUE\nUsername    system:bootstrap:abcdef\nGroups      [system:bootstrappers system:authenticated]\n');
    await run(['config', 'set-credentials', 'boot', '--token', 'abcdef.0123456789abcdee']);
    expect((await run(['auth', 'whoami', '--context', 'boot'])).err).toBe('error: You must be logged in to the server (Unauthorized)\n');
    await run(['config', 'set-credentials', 'boot', '--token', 'zzzzzz.0123456789abcdef']);
    expect((await run(['auth', 'whoami', '--context', 'boot'])).err).toBe('error: You must be logged in to the server (Unauthorized)\n');
  });

  it('manages contexts like kubectl config', async () => {
    const g = await run(['config', 'get-contexts']);
    expect(g.out.split('\n')[0]).toMatch(/^CURRENT\s+NAME\s+CLUSTER\s+AUTHINFO\s+NAMESPACE$/);
    expect(g.out).toMatch(/\n\*\s+local\s+local\s+local-root\s+default\n/);
    expect(await run(['config', 'use-context', 'nope'])).toEqual({ code: 1, out: '', err: 'error: no context exists with the name: "nope"\n' });
    expect((await run(['config', 'use-context', 'local-tls'])).out).toBe('Switched to context "local-tls".\n');
    expect((await run(['config', 'current-context'])).out).toBe('local-tls\n');
    expect((await run(['config', 'view'])).out).toContain('token: REDACTED');
    expect((await run(['config', 'set-context', '--current', '--namespace', 'shop'])).out).toBe('Context "local-tls" modified.\n');
    expect((await run(['get', 'configmaps', '-o', 'name'])).out).toBe('configmap/game-demo\nconfigmap/watched\n');
    expect(fs.statSync(env.BERTH_KUBECONFIG!).mode & 0o777).toBe(0o600);
  });
});
