// Node TLS bootstrap end to end on a real etcd and a real berth-etcd-client process: a bootstrap
// token Secret, a client that authenticates with the token, makes a key and a CSR, gets its
// certificate from the built-in approver and signer, then talks to the Store over mutual TLS as
// system:node:<name>. Requests that are not node client requests stay pending; expired, unknown
// and mismatched tokens are UNAUTHENTICATED.
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { core } from '@berth/api';
import { KUBELET_CLIENT_SIGNER, KUBE_APISERVER_CLIENT_SIGNER, StoreClient, decodeObject, generateKeyAndCsr, parseCsr, requestCertificate } from '@berth/apimachinery';
import { BerthError, EtcdCluster, freePort, makeTestPki, startServiceProcess, waitServing, type ServiceProcess, type TestPki } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClusterSigner } from './csr-signer';

const bin = path.resolve(__dirname, '..', '..', 'dist', 'bin', 'berth-etcd-client.js');
const suffix = crypto.randomBytes(3).toString('hex');
const TOKEN_ID = crypto.randomBytes(3).toString('hex');
const TOKEN_SECRET = crypto.randomBytes(8).toString('hex');
const TOKEN = `${TOKEN_ID}.${TOKEN_SECRET}`;

let dir: string;
let pki: TestPki;
let etcd: EtcdCluster;
let svc: ServiceProcess;
let admin: StoreClient;
let tlsTarget: string;
const clients: StoreClient[] = [];

function tokenSecret(id: string, secret: string, extra: Record<string, string> = {}): core.Object {
  const data: Record<string, string> = { 'token-id': id, 'token-secret': secret, 'usage-bootstrap-authentication': 'true', ...extra };
  return decodeObject({
    apiVersion: 'v1', kind: 'Secret', type: 'bootstrap.kubernetes.io/token',
    metadata: { name: `bootstrap-token-${id}`, namespace: 'kube-system' },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  });
}

function csrObject(name: string, pem: string, o: { signerName?: string; usages?: string[]; username?: string } = {}): core.Object {
  return decodeObject({
    apiVersion: 'certificates.k8s.io/v1', kind: 'CertificateSigningRequest', metadata: { name },
    spec: { request: Buffer.from(pem).toString('base64'), signerName: o.signerName ?? KUBELET_CLIENT_SIGNER, usages: o.usages ?? ['client auth', 'digital signature', 'key encipherment'], ...(o.username ? { username: o.username, groups: ['system:masters'] } : {}) },
  });
}

function client(o: { token?: string; cert?: string; key?: string }): StoreClient {
  const c = new StoreClient({ target: tlsTarget, tls: { caFile: pki.ca, certFile: o.cert, keyFile: o.key }, bearerToken: o.token });
  clients.push(c);
  return c;
}

async function waitFor<T>(what: string, f: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${svc.output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const issued = (c: StoreClient, name: string) => waitFor(`certificate of ${name}`, async () => {
  const o = await c.get('certificatesigningrequests', '', name);
  return o.certificateSigningRequest!.status?.certificate?.length ? o.certificateSigningRequest! : undefined;
});

async function code(p: Promise<unknown>): Promise<string> {
  try { await p; return 'OK'; } catch (e) { return `${(e as BerthError).kind}: ${(e as Error).message}`; }
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-csr-${suffix}-`));
  pki = makeTestPki(path.join(dir, 'pki'));
  etcd = await EtcdCluster.start({ dataRoot: path.join(dir, 'etcd') });
  const port = await freePort();
  tlsTarget = `127.0.0.1:${port}`;
  const sock = `unix://${path.join(dir, 'etcd-client.sock')}`;
  svc = startServiceProcess(bin, ['--listen', sock, '--state-dir', path.join(dir, 'state'), '--etcd-endpoints', etcd.endpoints.join(','), '--etcd-health-interval-ms', '200',
    '--secure-listen', tlsTarget, '--client-ca-file', pki.ca, '--tls-cert-file', pki.serverCert, '--tls-private-key-file', pki.serverKey,
    '--cluster-signing-cert-file', pki.ca, '--cluster-signing-key-file', path.join(pki.dir, 'ca.key'), '--cluster-signing-duration', '2h0m0s']);
  expect(await waitServing(sock, 30_000), svc.output()).toBe('SERVING');
  admin = new StoreClient({ target: sock });
  clients.push(admin);
  await admin.create(tokenSecret(TOKEN_ID, TOKEN_SECRET, { 'auth-extra-groups': 'system:bootstrappers:berth:default-node-token', description: 'test' }));
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await svc?.stop();
  await etcd?.destroy();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('node TLS bootstrap', () => {
  it('a bootstrap token gets a node its client certificate, which then works over mTLS', async () => {
    const boot = client({ token: TOKEN });
    const me = await boot.whoAmI();
    expect(me.username).toBe(`system:bootstrap:${TOKEN_ID}`);
    expect(me.groups.sort()).toEqual(['system:authenticated', 'system:bootstrappers', 'system:bootstrappers:berth:default-node-token']);
    expect(me.authenticator).toBe('bootstrap-token');
    // A bootstrapper may ask for certificates and nothing else.
    expect(await code(boot.list({ resource: 'pods' }))).toMatch(/^PermissionDenied/);
    expect(await code(boot.get('secrets', 'kube-system', `bootstrap-token-${TOKEN_ID}`))).toMatch(/^PermissionDenied/);

    const node = `node-${suffix}`;
    const { keyPem, csrPem } = await generateKeyAndCsr({ commonName: `system:node:${node}`, organizations: ['system:nodes'] });
    // The requester is the caller, whatever the request claims.
    const created = await boot.create(csrObject(`node-csr-${suffix}`, csrPem, { username: 'system:admin' }));
    expect(created.certificateSigningRequest!.spec!.username).toBe(`system:bootstrap:${TOKEN_ID}`);
    expect(created.certificateSigningRequest!.spec!.groups).toContain('system:bootstrappers');
    expect(created.certificateSigningRequest!.spec!.groups).not.toContain('system:masters');
    // Nor may a bootstrapper approve its own request.
    const self = structuredClone(created);
    self.certificateSigningRequest!.status = { conditions: [{ type: 'Approved', status: 'True', reason: 'Me', message: '', lastUpdateTime: '', lastTransitionTime: '' }], certificate: Buffer.alloc(0) };
    expect(await code(boot.updateStatus(self, { subresource: 'approval' }))).toMatch(/^PermissionDenied.*certificatesigningrequests\/approval/);

    const csr = await issued(boot, `node-csr-${suffix}`);
    expect(csr.status!.conditions.find((c) => c.type === 'Approved')).toMatchObject({ status: 'True', reason: 'AutoApproved' });
    const certPem = Buffer.from(csr.status!.certificate).toString();
    const cert = new crypto.X509Certificate(certPem);
    const ca = new crypto.X509Certificate(fs.readFileSync(pki.ca));
    expect(cert.checkIssued(ca) && cert.verify(ca.publicKey)).toBe(true);
    expect(cert.subject.split('\n').sort()).toEqual([`CN=system:node:${node}`, 'O=system:nodes']);
    expect(cert.ca).toBe(false);
    // --cluster-signing-duration 2h0m0s caps the validity.
    expect(Math.abs(Date.parse(cert.validTo) - Date.now() - 2 * 3600_000)).toBeLessThan(120_000);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']); // extended key usage: client auth only
    expect(cert.checkPrivateKey(crypto.createPrivateKey(keyPem))).toBe(true);
    // openssl agrees it is a client certificate of this CA.
    fs.writeFileSync(path.join(dir, 'node.crt'), certPem);
    fs.writeFileSync(path.join(dir, 'node.key'), keyPem, { mode: 0o600 });
    expect(execFileSync('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', pki.ca, path.join(dir, 'node.crt')]).toString()).toMatch(/: OK/);

    const asNode = client({ cert: path.join(dir, 'node.crt'), key: path.join(dir, 'node.key') });
    const who = await asNode.whoAmI();
    expect(who).toMatchObject({ username: `system:node:${node}`, authenticator: 'x509' });
    expect(who.groups.sort()).toEqual(['system:authenticated', 'system:nodes']);
    // The Node authorizer now applies: it writes its own node only, and may read the others
    // (pod-network routes need their addresses and pod CIDRs).
    await asNode.create(decodeObject({ apiVersion: 'v1', kind: 'Node', metadata: { name: node } }));
    expect((await asNode.get('nodes', '', node)).node!.metadata!.name).toBe(node);
    expect(await code(asNode.get('nodes', '', `other-${suffix}`))).toMatch(/^NotFound/);
    expect(await code(asNode.create(decodeObject({ apiVersion: 'v1', kind: 'Node', metadata: { name: `other-${suffix}` } })))).toMatch(/^PermissionDenied/);

    // Renewal: the node asks for itself with its certificate, and is approved (selfnodeclient).
    const renew = await generateKeyAndCsr({ commonName: `system:node:${node}`, organizations: ['system:nodes'] });
    await asNode.create(csrObject(`node-renew-${suffix}`, renew.csrPem));
    expect((await issued(asNode, `node-renew-${suffix}`)).spec!.username).toBe(`system:node:${node}`);
    // ...but not for another node.
    const steal = await generateKeyAndCsr({ commonName: `system:node:other-${suffix}`, organizations: ['system:nodes'] });
    await asNode.create(csrObject(`node-steal-${suffix}`, steal.csrPem));
    const marker = await generateKeyAndCsr({ commonName: `system:node:${node}`, organizations: ['system:nodes'] });
    await asNode.create(csrObject(`node-marker-${suffix}`, marker.csrPem));
    await issued(asNode, `node-marker-${suffix}`); // handled after the one before it
    const stolen = (await admin.get('certificatesigningrequests', '', `node-steal-${suffix}`)).certificateSigningRequest!;
    expect(stolen.status?.conditions ?? []).toEqual([]);
    expect(stolen.status?.certificate?.length ?? 0).toBe(0);
  }, 60_000);

  it('signs a node\'s serving certificate (its DNS/IP names) once an administrator approves it', async () => {
    const node = `srv-${suffix}`;
    const boot = client({ token: TOKEN });
    const nodeCreds = await requestCertificate(boot, { commonName: `system:node:${node}`, organizations: ['system:nodes'], timeoutMs: 20_000 });
    fs.writeFileSync(path.join(dir, `${node}.crt`), nodeCreds.certPem);
    fs.writeFileSync(path.join(dir, `${node}.key`), nodeCreds.keyPem, { mode: 0o600 });
    const asNode = client({ cert: path.join(dir, `${node}.crt`), key: path.join(dir, `${node}.key`) });
    const approve = async (name: string) => {
      const o = await admin.get('certificatesigningrequests', '', name);
      o.certificateSigningRequest!.status = { conditions: [{ type: 'Approved', status: 'True', reason: 'AdminApproved', message: '', lastUpdateTime: '', lastTransitionTime: '' }], certificate: Buffer.alloc(0) };
      await admin.updateStatus(o, { subresource: 'approval' });
    };
    const serving = { signerName: 'kubernetes.io/kubelet-serving', usages: ['server auth', 'digital signature', 'key encipherment'] };
    const { keyPem, csrPem } = await generateKeyAndCsr({ commonName: `system:node:${node}`, organizations: ['system:nodes'], dnsNames: [node, 'localhost'], ipAddresses: ['127.0.0.1'] });
    await asNode.create(csrObject(`serving-${suffix}`, csrPem, serving));
    await new Promise((r) => setTimeout(r, 300));
    expect((await admin.get('certificatesigningrequests', '', `serving-${suffix}`)).certificateSigningRequest!.status?.conditions ?? []).toEqual([]); // never auto-approved
    await approve(`serving-${suffix}`);
    const cert = new crypto.X509Certificate(Buffer.from((await issued(admin, `serving-${suffix}`)).status!.certificate).toString());
    expect(cert.subjectAltName).toBe(`DNS:${node}, DNS:localhost, IP Address:127.0.0.1`);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // server auth
    expect(cert.checkHost('localhost')).toBe('localhost');
    expect(cert.checkPrivateKey(crypto.createPrivateKey(keyPem))).toBe(true);
    // The same request from a bootstrapper is approved by the administrator but refused by the signer.
    await boot.create(csrObject(`serving-boot-${suffix}`, (await generateKeyAndCsr({ commonName: `system:node:${node}`, organizations: ['system:nodes'], dnsNames: [node] })).csrPem, serving));
    await approve(`serving-boot-${suffix}`);
    const failed = await waitFor('Failed condition', async () => {
      const c = (await admin.get('certificatesigningrequests', '', `serving-boot-${suffix}`)).certificateSigningRequest!;
      return c.status?.conditions.some((x) => x.type === 'Failed') ? c : undefined;
    });
    expect(failed.status!.conditions.find((c) => c.type === 'Failed')!.message).toMatch(/must be requested by that node, not system:bootstrap:/);
  }, 60_000);

  it('leaves requests that are not node client requests pending, until an administrator decides', async () => {
    const boot = client({ token: TOKEN });
    const node = `pend-${suffix}`;
    const cases: [string, Parameters<typeof generateKeyAndCsr>[0], Parameters<typeof csrObject>[2]][] = [
      ['wrong-org', { commonName: `system:node:${node}`, organizations: ['system:masters'] }, {}],
      ['two-orgs', { commonName: `system:node:${node}`, organizations: ['system:nodes', 'system:masters'] }, {}],
      ['not-a-node', { commonName: 'alice', organizations: ['system:nodes'] }, {}],
      ['server-usage', { commonName: `system:node:${node}`, organizations: ['system:nodes'] }, { usages: ['client auth', 'server auth'] }],
      ['other-signer', { commonName: `system:node:${node}`, organizations: ['system:nodes'] }, { signerName: KUBE_APISERVER_CLIENT_SIGNER }],
    ];
    for (const [name, subject, o] of cases) await boot.create(csrObject(`${name}-${suffix}`, (await generateKeyAndCsr(subject)).csrPem, o));
    // A good request made after them is approved and signed, so they have all been looked at.
    await boot.create(csrObject(`good-${suffix}`, (await generateKeyAndCsr({ commonName: `system:node:${node}`, organizations: ['system:nodes'] })).csrPem));
    await issued(boot, `good-${suffix}`);
    for (const [name] of cases) {
      const c = (await admin.get('certificatesigningrequests', '', `${name}-${suffix}`)).certificateSigningRequest!;
      expect({ name, conditions: c.status?.conditions ?? [], cert: c.status?.certificate?.length ?? 0 }).toEqual({ name, conditions: [], cert: 0 });
    }
    // An administrator approves the kube-apiserver-client request: the signer issues it.
    const other = (await admin.get('certificatesigningrequests', '', `other-signer-${suffix}`));
    other.certificateSigningRequest!.status = { conditions: [{ type: 'Approved', status: 'True', reason: 'AdminApproved', message: 'test', lastUpdateTime: '', lastTransitionTime: '' }], certificate: Buffer.alloc(0) };
    await admin.updateStatus(other, { subresource: 'approval' });
    expect((await issued(admin, `other-signer-${suffix}`)).status!.conditions.map((c) => c.type)).toEqual(['Approved']);
    // An approved kubelet request with the wrong subject is refused by the signer (Failed), not signed.
    const wrong = await admin.get('certificatesigningrequests', '', `wrong-org-${suffix}`);
    wrong.certificateSigningRequest!.status = { conditions: [{ type: 'Approved', status: 'True', reason: 'AdminApproved', message: '', lastUpdateTime: '', lastTransitionTime: '' }], certificate: Buffer.alloc(0) };
    await admin.updateStatus(wrong, { subresource: 'approval' });
    const failed = await waitFor('Failed condition', async () => {
      const c = (await admin.get('certificatesigningrequests', '', `wrong-org-${suffix}`)).certificateSigningRequest!;
      return c.status?.conditions.some((x) => x.type === 'Failed') ? c : undefined;
    });
    expect(failed.status!.conditions.find((c) => c.type === 'Failed')!.message).toMatch(/subject O must be exactly system:nodes/);
    expect(failed.status!.certificate.length).toBe(0);
    // Denied is final: it cannot be turned into Approved.
    const den = await admin.get('certificatesigningrequests', '', `two-orgs-${suffix}`);
    den.certificateSigningRequest!.status = { conditions: [{ type: 'Denied', status: 'True', reason: 'AdminDenied', message: '', lastUpdateTime: '', lastTransitionTime: '' }], certificate: Buffer.alloc(0) };
    const denied = await admin.updateStatus(den, { subresource: 'approval' });
    denied.certificateSigningRequest!.status!.conditions = [{ type: 'Approved', status: 'True', reason: 'Changed', message: '', lastUpdateTime: '', lastTransitionTime: '' }];
    expect(await code(admin.updateStatus(denied, { subresource: 'approval' }))).toMatch(/^InvalidArgument.*may not remove a condition of type "Denied"/);
  }, 60_000);

  it('requestCertificate: what berth join calls — issued, denied, or still pending', async () => {
    const boot = client({ token: TOKEN });
    const node = `rc-${suffix}`;
    const got = await requestCertificate(boot, { commonName: `system:node:${node}`, organizations: ['system:nodes'], timeoutMs: 20_000 });
    expect(got.name).toMatch(/^node-csr-/);
    const cert = new crypto.X509Certificate(got.certPem);
    expect(cert.subject.split('\n').sort()).toEqual([`CN=system:node:${node}`, 'O=system:nodes']);
    expect(cert.checkPrivateKey(crypto.createPrivateKey(got.keyPem))).toBe(true);
    // Not a node request: pending until an administrator denies it.
    const pending = requestCertificate(boot, { commonName: 'mallory', organizations: ['system:masters'], name: `deny-me-${suffix}`, timeoutMs: 20_000 });
    pending.catch(() => undefined);
    await waitFor('the request', async () => (await code(admin.get('certificatesigningrequests', '', `deny-me-${suffix}`))) === 'OK' ? true : undefined);
    const d = await admin.get('certificatesigningrequests', '', `deny-me-${suffix}`);
    d.certificateSigningRequest!.status = { conditions: [{ type: 'Denied', status: 'True', reason: 'NotANode', message: 'no', lastUpdateTime: '', lastTransitionTime: '' }], certificate: Buffer.alloc(0) };
    await admin.updateStatus(d, { subresource: 'approval' });
    await expect(pending).rejects.toThrow(/deny-me-.* was denied: NotANode: no/);
    await expect(requestCertificate(boot, { commonName: 'mallory', timeoutMs: 500 })).rejects.toThrow(/still pending: an administrator may approve it with "berth certificate approve node-csr-/);
  }, 60_000);

  it('approving needs "approve" on the signer as well as the approval subresource', async () => {
    const boot = client({ token: TOKEN });
    const group = 'system:bootstrappers:berth:default-node-token';
    const role = (name: string, rules: unknown[]) => admin.create(decodeObject({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: { name }, rules }));
    await role(`csr-approval-${suffix}`, [{ apiGroups: ['certificates.k8s.io'], resources: ['certificatesigningrequests/approval'], verbs: ['update'] }]);
    await admin.create(decodeObject({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: `csr-approval-${suffix}` }, subjects: [{ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: group }], roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `csr-approval-${suffix}` } }));
    await admin.create(csrObject(`signer-check-${suffix}`, (await generateKeyAndCsr({ commonName: 'bob' })).csrPem, { signerName: 'example.com/team' }));
    const approve = async () => {
      const o = await boot.get('certificatesigningrequests', '', `signer-check-${suffix}`);
      o.certificateSigningRequest!.status = { conditions: [{ type: 'Approved', status: 'True', reason: 'Team', message: '', lastUpdateTime: '', lastTransitionTime: '' }], certificate: Buffer.alloc(0) };
      return boot.updateStatus(o, { subresource: 'approval' });
    };
    expect(await code(approve())).toMatch(/^PermissionDenied: .*user not permitted to approve requests with signerName "example.com\/team"/);
    await role(`csr-signer-${suffix}`, [{ apiGroups: ['certificates.k8s.io'], resources: ['signers'], resourceNames: ['example.com/*'], verbs: ['approve'] }]);
    await admin.create(decodeObject({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: `csr-signer-${suffix}` }, subjects: [{ kind: 'Group', apiGroup: 'rbac.authorization.k8s.io', name: group }], roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: `csr-signer-${suffix}` } }));
    expect(await code(approve())).toBe('OK');
    for (const n of [`csr-approval-${suffix}`, `csr-signer-${suffix}`]) {
      await admin.delete({ resource: 'clusterrolebindings', name: n });
      await admin.delete({ resource: 'clusterroles', name: n });
    }
  }, 30_000);

  it('refuses expired, unknown, mismatched and unusable bootstrap tokens', async () => {
    const id = crypto.randomBytes(3).toString('hex');
    const secret = crypto.randomBytes(8).toString('hex');
    await admin.create(tokenSecret(id, secret, { expiration: '2020-01-01T00:00:00Z' }));
    expect(await code(client({ token: `${id}.${secret}` }).whoAmI())).toMatch(/^Unauthenticated: .*bootstrap token has expired/);
    expect(await code(client({ token: `zzzzzz.${secret}` }).whoAmI())).toMatch(/^Unauthenticated: .*invalid bearer token/);
    expect(await code(client({ token: `${TOKEN_ID}.${'0'.repeat(16)}` }).whoAmI())).toMatch(/^Unauthenticated/);
    const id3 = crypto.randomBytes(3).toString('hex');
    await admin.create(tokenSecret(id3, secret, { expiration: 'next tuesday' }));
    expect(await code(client({ token: `${id3}.${secret}` }).whoAmI())).toMatch(/^Unauthenticated: .*invalid expiration/);
    const id2 = crypto.randomBytes(3).toString('hex');
    await admin.create(tokenSecret(id2, secret, { 'usage-bootstrap-authentication': 'false' }));
    expect(await code(client({ token: `${id2}.${secret}` }).whoAmI())).toMatch(/^Unauthenticated/);
    // An expired token cannot create a CSR either (nothing changes).
    const { csrPem } = await generateKeyAndCsr({ commonName: 'system:node:x', organizations: ['system:nodes'] });
    expect(await code(client({ token: `${id}.${secret}` }).create(csrObject(`expired-${suffix}`, csrPem)))).toMatch(/^Unauthenticated/);
    expect(await code(admin.get('certificatesigningrequests', '', `expired-${suffix}`))).toMatch(/^NotFound/);
  }, 30_000);

  it('rejects malformed requests with the field path', async () => {
    const { csrPem } = await generateKeyAndCsr({ commonName: 'system:node:x', organizations: ['system:nodes'] });
    expect(await code(admin.create(csrObject(`bad-pem-${suffix}`, 'hello')))).toMatch(/^InvalidArgument: .*spec\.request: Invalid value/);
    expect(await code(admin.create(csrObject(`bad-usage-${suffix}`, csrPem, { usages: ['client auth', 'teleport'] })))).toMatch(/spec\.usages\[1\]: Unsupported value: "teleport"/);
    expect(await code(admin.create(csrObject(`bad-signer-${suffix}`, csrPem, { signerName: 'nope' })))).toMatch(/spec\.signerName: Invalid value: "nope"/);
    const ok = await admin.create(csrObject(`immutable-${suffix}`, csrPem, { signerName: 'example.com/custom' }));
    ok.certificateSigningRequest!.spec!.usages = ['client auth'];
    expect(await code(admin.update(ok))).toMatch(/spec: Forbidden: field is immutable/);
    // A metadata-only change keeps the generation (the request bytes compare by content).
    const labelled = await admin.get('certificatesigningrequests', '', `immutable-${suffix}`);
    labelled.certificateSigningRequest!.metadata!.labels = { team: 'a' };
    expect((await admin.update(labelled)).certificateSigningRequest!.metadata!.generation).toBe(1);
  });
});

describe('node TLS bootstrap on the v2 storage backend', () => {
  it('the same flow works with --etcd-api=v2: token, certificate, mTLS as the node', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), `berth-csr2-${suffix}-`));
    const etcd2 = await EtcdCluster.start({ dataRoot: path.join(d, 'etcd'), enableV2: true });
    const port = await freePort();
    const sock = `unix://${path.join(d, 'etcd-client.sock')}`;
    const proc = startServiceProcess(bin, ['--listen', sock, '--state-dir', path.join(d, 'state'), '--etcd-endpoints', etcd2.endpoints.join(','), '--etcd-api', 'v2', '--etcd-health-interval-ms', '200',
      '--secure-listen', `127.0.0.1:${port}`, '--client-ca-file', pki.ca, '--tls-cert-file', pki.serverCert, '--tls-private-key-file', pki.serverKey,
      '--cluster-signing-cert-file', pki.ca, '--cluster-signing-key-file', path.join(pki.dir, 'ca.key')]);
    const local: StoreClient[] = [];
    try {
      expect(await waitServing(sock, 30_000), proc.output()).toBe('SERVING');
      const adm = new StoreClient({ target: sock });
      local.push(adm);
      await adm.create(tokenSecret(TOKEN_ID, TOKEN_SECRET));
      const boot = new StoreClient({ target: `127.0.0.1:${port}`, tls: { caFile: pki.ca }, bearerToken: TOKEN });
      local.push(boot);
      const node = `v2-${suffix}`;
      const got = await requestCertificate(boot, { commonName: `system:node:${node}`, organizations: ['system:nodes'], timeoutMs: 20_000 });
      fs.writeFileSync(path.join(d, 'n.crt'), got.certPem);
      fs.writeFileSync(path.join(d, 'n.key'), got.keyPem, { mode: 0o600 });
      const asNode = new StoreClient({ target: `127.0.0.1:${port}`, tls: { caFile: pki.ca, certFile: path.join(d, 'n.crt'), keyFile: path.join(d, 'n.key') } });
      local.push(asNode);
      expect((await asNode.whoAmI()).username).toBe(`system:node:${node}`);
    } finally {
      for (const c of local) c.close();
      await proc.stop();
      await etcd2.destroy();
      fs.rmSync(d, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('the same berth-etcd-client process', () => {
  it('collects garbage: deleting an owner deletes its dependents', async () => {
    const owner = await admin.create(decodeObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `gc-owner-${suffix}` } }));
    const m = owner.configMap!.metadata!;
    await admin.create(decodeObject({ apiVersion: 'v1', kind: 'Secret', metadata: { name: `gc-dep-${suffix}`, ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: m.name, uid: m.uid }] } }));
    await admin.delete({ resource: 'configmaps', namespace: 'default', name: m.name });
    await waitFor('the dependent to go', async () => (await code(admin.get('secrets', 'default', `gc-dep-${suffix}`))).startsWith('NotFound') ? true : undefined);
  }, 30_000);
});

describe('ClusterSigner', () => {
  it('issues for one year at most, within the CA, from a CA with an RSA or EC key', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), `berth-signer-${suffix}-`));
    try {
      for (const [kind, args] of [['ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']], ['rsa', ['-newkey', 'rsa:2048']]] as const) {
        execFileSync('openssl', ['req', '-x509', ...args, '-nodes', '-keyout', `${kind}.key`, '-out', `${kind}.crt`, '-days', '3650', '-subj', `/CN=ca-${kind}`, '-addext', 'basicConstraints=critical,CA:TRUE'], { cwd: d, stdio: 'ignore' });
        const signer = await ClusterSigner.load(path.join(d, `${kind}.crt`), path.join(d, `${kind}.key`));
        const p = parseCsr((await generateKeyAndCsr({ commonName: 'system:node:n', organizations: ['system:nodes'] })).csrPem);
        const cert = new crypto.X509Certificate(await signer.sign(p, ['client auth', 'digital signature']));
        const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
        expect(days).toBeGreaterThan(364.9);
        expect(days).toBeLessThan(365.1);
        expect(cert.verify(new crypto.X509Certificate(fs.readFileSync(path.join(d, `${kind}.crt`))).publicKey)).toBe(true);
        const short = new crypto.X509Certificate(await signer.sign(p, ['client auth'], 3600));
        expect((Date.parse(short.validTo) - Date.now()) / 1000).toBeLessThan(3601);
      }
      // A key that is not the certificate's is refused at start, naming the flag.
      await expect(ClusterSigner.load(path.join(d, 'ec.crt'), path.join(d, 'rsa.key'))).rejects.toThrow(/--cluster-signing-key-file: .* is not the key of/);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});
