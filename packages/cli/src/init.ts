// `berth init`: the control plane of a cluster that spans machines (like `kubeadm init`): etcd,
// the cluster PKI, the Store API (unix socket + mutual TLS on the advertised address, with the
// built-in signer of node client certificates) and the scheduler, in the foreground. It makes
// a bootstrap token and prints the `berth join` command a node runs to join with it.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { core } from '@berth/api';
import { StoreClient } from '@berth/apimachinery';
import { runDir as defaultRunDir, stateRoot } from '@berth/common';
import { createClusterPki } from './certs';
import { ForegroundRun, startControlPlane, startLocalEtcd, waitAllServing } from './cluster';
import { CommandUsageError, ETCD_FLAGS, parseDuration, parseEtcdFlags, parseFlags, parseInteger } from './cluster-flags';
import { writeAdminConfig } from './kubeconfig';

export const INIT_HELP = `Usage: berth init [flags]

Sets up a control plane on this machine and prints the command that joins a node to it.

  --advertise-address IP    address the Store API listens on for nodes (default: the first non-loopback IPv4)
  --port N                  port of the Store API's mutual-TLS listener (default 6443)
  --etcd-members N          members of the local etcd cluster (default 1)
  --etcd-endpoints URLS     use an existing etcd cluster (comma-separated http:// URLs) instead
  --token ID.SECRET         the bootstrap token to create (default: a random one)
  --token-ttl DURATION      how long the token is valid (default 24h; 0 = never expires)

Environment: BERTH_RUN_DIR (sockets, default /run/berth), BERTH_STATE_DIR (state, default /var/lib/berth)
`;

export interface InitOptions {
  runDir?: string;
  stateDir?: string;
  out?: NodeJS.WritableStream;
  signal?: AbortSignal;
  advertiseAddress?: string;
  port?: number;
  etcdMembers?: number;
  etcdEndpoints?: string[];
  token?: string;
  tokenTtlMs?: number;
}

const TOKEN_RE = /^([a-z0-9]{6})\.([a-z0-9]{16})$/;

export function parseInitArgs(args: string[]): InitOptions | 'help' {
  const v = parseFlags(args, { 'advertise-address': { type: 'string' }, port: { type: 'string' }, ...ETCD_FLAGS, token: { type: 'string' }, 'token-ttl': { type: 'string' } });
  if (v.help) return 'help';
  const o: InitOptions = parseEtcdFlags(v);
  if (v['advertise-address'] !== undefined) {
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(v['advertise-address']) || v['advertise-address'].split('.').some((x) => Number(x) > 255)) throw new CommandUsageError(`--advertise-address: expected an IPv4 address, got "${v['advertise-address']}"`);
    o.advertiseAddress = v['advertise-address'];
  }
  if (v.port !== undefined) o.port = parseInteger(v.port, '--port', 1, 65535);
  if (v.token !== undefined) {
    if (!TOKEN_RE.test(v.token)) throw new CommandUsageError(`--token: expected <id>.<secret> as [a-z0-9]{6}.[a-z0-9]{16}, got "${v.token}"`);
    o.token = v.token;
  }
  if (v['token-ttl'] !== undefined) o.tokenTtlMs = parseDuration(v['token-ttl'], '--token-ttl');
  return o;
}

/** The first non-loopback IPv4 address of this machine (kubeadm's default advertise address). */
export function defaultAdvertiseAddress(): string {
  for (const addrs of Object.values(os.networkInterfaces())) for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  throw new Error('no non-loopback IPv4 address on this machine: pass --advertise-address');
}

/** A random bootstrap token `<6>.<16>` of [a-z0-9]. */
export function newBootstrapToken(): string {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
  const pick = (n: number) => Array.from(crypto.randomBytes(n * 2)).map((b) => chars[b % 36]).slice(0, n).join('');
  return `${pick(6)}.${pick(16)}`;
}

/** kubeadm's --discovery-token-ca-cert-hash: sha256 of the CA's SubjectPublicKeyInfo (DER). */
export function caCertHash(caPem: string | Buffer): string {
  const spki = new crypto.X509Certificate(caPem).publicKey.export({ type: 'spki', format: 'der' });
  return `sha256:${crypto.createHash('sha256').update(spki).digest('hex')}`;
}

/** The bootstrap token as the Store reads it: a kube-system Secret `bootstrap-token-<id>`. */
export function bootstrapTokenSecret(token: string, ttlMs: number, now = Date.now()): core.Object {
  const m = TOKEN_RE.exec(token);
  if (!m) throw new Error(`bootstrap token: expected <id>.<secret>, got "${token}"`);
  const data: Record<string, Buffer> = {
    'token-id': Buffer.from(m[1]),
    'token-secret': Buffer.from(m[2]),
    'usage-bootstrap-authentication': Buffer.from('true'),
    description: Buffer.from('made by berth init'),
  };
  if (ttlMs > 0) data.expiration = Buffer.from(new Date(now + ttlMs).toISOString().replace(/\.\d{3}Z$/, 'Z'));
  return core.Object.fromPartial({
    secret: { apiVersion: 'v1', kind: 'Secret', metadata: { name: `bootstrap-token-${m[1]}`, namespace: 'kube-system' }, type: 'bootstrap.kubernetes.io/token', data },
  });
}

export async function init(opts: InitOptions = {}): Promise<number> {
  const out = opts.out ?? process.stdout;
  const runDir = path.resolve(opts.runDir ?? defaultRunDir());
  const stateDir = path.resolve(opts.stateDir ?? stateRoot());
  const run = new ForegroundRun('init', runDir, stateDir, out, opts.signal);
  if (!(await run.begin())) return 1;
  const say = (s: string) => run.say(s);
  let store: StoreClient | undefined;
  try {
    return await run.run(async () => {
      const advertise = opts.advertiseAddress ?? defaultAdvertiseAddress();
      const port = opts.port ?? 6443;
      let etcdEndpoints = opts.etcdEndpoints;
      if (etcdEndpoints) say(`etcd         ${etcdEndpoints.join(',')}  (existing cluster)`);
      else etcdEndpoints = await startLocalEtcd(run, opts.etcdMembers ?? 1);
      run.checkStop();
      const pki = createClusterPki(path.join(stateDir, 'pki'), { sans: [advertise] });
      say(`cluster CA   ${pki.ca.cert}`);
      const storeTcp = `${advertise}:${port}`;
      const cp = startControlPlane(run, { etcdEndpoints, pki, storeTcp, signing: true });
      const statuses = await waitAllServing(run, cp.children);
      run.checkStop();
      cp.children.forEach((c, i) => say(`${c.name.padEnd(12)} ${c.socket.padEnd(50)} ${statuses[i]}`));
      if (!statuses.every((s) => s === 'SERVING')) throw new Error(`the control plane is not serving; logs are in ${run.logDir}`);
      const adminConf = writeAdminConfig({ stateDir, runDir, tcp: { server: storeTcp, ca: pki.ca.cert, cert: pki.admin.cert, key: pki.admin.key } });

      const token = opts.token ?? newBootstrapToken();
      store = new StoreClient({ target: cp.storeUnix, defaultDeadlineMs: 10_000 });
      const secret = bootstrapTokenSecret(token, opts.tokenTtlMs ?? 24 * 3_600_000);
      try {
        await store.create(secret);
      } catch (e) {
        // The same token again (a restart of init with --token): replace it, with the new expiry.
        if ((e as { kind?: string }).kind !== 'AlreadyExists') throw e;
        const live = await store.get('secrets', 'kube-system', secret.secret!.metadata!.name);
        secret.secret!.metadata!.resourceVersion = live.secret!.metadata!.resourceVersion;
        await store.update(secret);
      }
      const hash = caCertHash(fs.readFileSync(pki.ca.cert));
      fs.writeFileSync(path.join(stateDir, 'join-command'), `berth join --token ${token} --server https://${storeTcp} --ca-cert-hash ${hash}\n`, { mode: 0o600 });
      say('');
      say(`Your Berth control plane is up: the Store API on ${cp.storeUnix} and mTLS on ${storeTcp}.`);
      say(`admin config ${adminConf}`);
      say('');
      say('Join a node by running this on it as root (with --pod-cidr, its own pod range):');
      say('');
      say(`  berth join --token ${token} --server https://${storeTcp} --ca-cert-hash ${hash} --pod-cidr 10.244.1.0/24`);
      say('');
      say(`(also in ${path.join(stateDir, 'join-command')}; the token is valid for ${opts.tokenTtlMs === 0 ? 'ever' : `${Math.round((opts.tokenTtlMs ?? 86_400_000) / 3_600_000)} h`})`);
      say('Press Ctrl-C to stop the control plane.');
    });
  } finally {
    store?.raw.close();
  }
}
