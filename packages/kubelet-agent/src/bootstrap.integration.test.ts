// The agent's own TLS bootstrap (--bootstrap-token), on a real etcd and a real berth-etcd-client
// serving mTLS with its built-in approver and signer: an agent with no certificate gets one with
// the token, registers its Node as system:node:<name>, and a restarted agent re-uses the
// certificate on disk instead of asking again. Bad combinations exit 2 naming the option.
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { StoreClient, decodeObject } from '@berth/apimachinery';
import { EtcdCluster, freePort, makeTestPki, startServiceProcess, waitServing, type ServiceProcess, type TestPki } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const storeBin = path.resolve(__dirname, '..', '..', 'etcd-client', 'dist', 'bin', 'berth-etcd-client.js');
const agentBin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth-kubelet-agent.js');
const suffix = crypto.randomBytes(3).toString('hex');
const TOKEN_ID = crypto.randomBytes(3).toString('hex');
const TOKEN = `${TOKEN_ID}.${crypto.randomBytes(8).toString('hex')}`;
const nodeName = `boot-${suffix}`;

let dir: string;
let pki: TestPki;
let etcd: EtcdCluster;
let store: ServiceProcess;
let admin: StoreClient;
let tlsTarget: string;

async function until<T>(what: string, f: () => Promise<T | undefined> | T | undefined, ms: number, log: () => string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await Promise.resolve(f()).catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${log().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function agentArgs(stateDir: string, extra: string[] = []): string[] {
  // No runtime or network service: the bootstrap and the Node registration come first and do
  // not need them (the agent reports them missing and keeps going).
  return ['--listen', `unix://${path.join(stateDir, 'kubelet.sock')}`, '--state-dir', stateDir, '--node-name', nodeName, '--node-ip', '127.0.0.1',
    '--runtime-endpoint', `unix://${path.join(dir, 'no-runtime.sock')}`, '--cni-endpoint', `unix://${path.join(dir, 'no-cni.sock')}`,
    '--cgroup-root', path.join(dir, 'cgroup-fixture'), ...extra];
}

const csrNames = async () => (await admin.list({ resource: 'certificatesigningrequests' })).items.map((o) => o.certificateSigningRequest!.metadata!.name);

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-ka-boot-${suffix}-`));
  fs.mkdirSync(path.join(dir, 'cgroup-fixture'));
  pki = makeTestPki(path.join(dir, 'pki'));
  etcd = await EtcdCluster.start({ dataRoot: path.join(dir, 'etcd'), removeDataOnDestroy: true });
  tlsTarget = `127.0.0.1:${await freePort()}`;
  const sock = `unix://${path.join(dir, 'store.sock')}`;
  store = startServiceProcess(storeBin, ['--listen', sock, '--state-dir', path.join(dir, 'store-state'), '--etcd-endpoints', etcd.endpoints.join(','),
    '--secure-listen', tlsTarget, '--client-ca-file', pki.ca, '--tls-cert-file', pki.serverCert, '--tls-private-key-file', pki.serverKey,
    '--cluster-signing-cert-file', pki.ca, '--cluster-signing-key-file', path.join(pki.dir, 'ca.key')]);
  expect(await waitServing(sock, 30_000), store.output()).toBe('SERVING');
  admin = new StoreClient({ target: sock });
  const data = { 'token-id': TOKEN_ID, 'token-secret': TOKEN.split('.')[1], 'usage-bootstrap-authentication': 'true' };
  await admin.create(decodeObject({
    apiVersion: 'v1', kind: 'Secret', type: 'bootstrap.kubernetes.io/token', metadata: { name: `bootstrap-token-${TOKEN_ID}`, namespace: 'kube-system' },
    data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  }));
}, 90_000);

afterAll(async () => {
  admin?.close();
  await store?.stop();
  await etcd?.destroy();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('berth-kubelet-agent --bootstrap-token', () => {
  it('gets its client certificate with the token, registers its Node with it, and re-uses it after a restart', async () => {
    const stateDir = path.join(dir, 'agent');
    const certFile = path.join(stateDir, 'pki', 'kubelet-client.crt');
    const keyFile = path.join(stateDir, 'pki', 'kubelet-client.key');
    const args = agentArgs(stateDir, ['--store', tlsTarget, '--store-ca', pki.ca, '--bootstrap-token', TOKEN]);
    let agent = startServiceProcess(agentBin, args);
    try {
      const node = await until('the Node registered by the bootstrapped agent', async () => (await admin.get('nodes', '', nodeName)).node, 60_000, () => agent.output());
      expect(node.metadata!.name).toBe(nodeName);
      const cert = new crypto.X509Certificate(fs.readFileSync(certFile));
      expect(cert.subject.split('\n')).toEqual(expect.arrayContaining([`CN=system:node:${nodeName}`, 'O=system:nodes']));
      expect(cert.checkIssued(new crypto.X509Certificate(fs.readFileSync(pki.ca)))).toBe(true);
      expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
      // The Store saw one request, made by the token's identity and approved by the approver.
      const names = await csrNames();
      const mine = [];
      for (const n of names) {
        const csr = (await admin.get('certificatesigningrequests', '', n)).certificateSigningRequest!;
        if (csr.spec!.username === `system:bootstrap:${TOKEN_ID}`) mine.push(csr);
      }
      expect(mine).toHaveLength(1);
      expect(agent.output()).toMatch(/issued through the bootstrap token/);
      await agent.stop();

      // A restart finds the certificate valid and asks for none; the lease renews as the node.
      const before = (await csrNames()).length;
      agent = startServiceProcess(agentBin, args);
      await until('the restarted agent to use the certificate on disk', () => (/on disk is valid/.test(agent.output()) ? true : undefined), 60_000, () => agent.output());
      await until('the node lease renewed by the restarted agent', async () => {
        const l = (await admin.get('leases', 'kube-node-lease', nodeName)).lease;
        return l?.spec?.holderIdentity === nodeName ? l : undefined;
      }, 60_000, () => agent.output());
      expect((await csrNames()).length).toBe(before);
    } finally {
      await agent.stop();
    }
  }, 180_000);

  it('a wrong token never gets a certificate, and the agent keeps retrying instead of dying', async () => {
    const stateDir = path.join(dir, 'agent-bad');
    const bad = `${TOKEN_ID}.${'0'.repeat(16)}`;
    const agent = startServiceProcess(agentBin, agentArgs(stateDir, ['--store', tlsTarget, '--store-ca', pki.ca, '--bootstrap-token', bad, '--node-name', `${nodeName}-bad`]));
    try {
      await until('the refused bootstrap in the log', () => (/node TLS bootstrap failed/.test(agent.output()) ? true : undefined), 60_000, () => agent.output());
      expect(agent.output()).toMatch(/[Uu]nauthenticated|invalid bootstrap token/);
      expect(fs.existsSync(path.join(stateDir, 'pki', 'kubelet-client.crt'))).toBe(false);
      expect(agent.proc.exitCode).toBeNull();
    } finally {
      await agent.stop();
    }
  }, 120_000);

  it('--bootstrap-token needs a TLS --store and --store-ca: exit 2 naming the option', () => {
    const stateDir = path.join(dir, 'agent-cfg');
    for (const extra of [['--store', `unix://${path.join(dir, 'store.sock')}`], ['--store', tlsTarget]]) {
      const r = spawnSync(process.execPath, [agentBin, ...agentArgs(stateDir, [...extra, '--bootstrap-token', TOKEN])], { encoding: 'utf8', timeout: 30_000 });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/bootstrap-token: needs --store/);
    }
  }, 60_000);
});
