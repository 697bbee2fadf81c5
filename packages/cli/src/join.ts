// `berth join`: a node joins a cluster made by `berth init` (like `kubeadm join`), in the
// foreground. It pins the cluster CA by the public-key hash it was given (the Store sends the CA
// after its own certificate in the TLS handshake; nothing is sent before the pin matches), then
// authenticates with the bootstrap token, asks for its client certificate with a
// CertificateSigningRequest (CN=system:node:<name>, O=system:nodes) that the Store's signer
// approves and signs, and starts runtime-shim, cni-manager and kubelet-agent with it.
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { bootstrapNodeCertificate } from '@berth/apimachinery';
import { runDir as defaultRunDir, stateRoot } from '@berth/common';
import { ForegroundRun, startNode, waitAllServing, type NetworkMode } from './cluster';
import { CommandUsageError, parseDuration, parseFlags, parseNetwork } from './cluster-flags';
import { caCertHash } from './init';

export const JOIN_HELP = `Usage: berth join --token ID.SECRET --server https://HOST:PORT --ca-cert-hash sha256:HEX --pod-cidr CIDR [flags]

Joins this machine to a cluster made by \`berth init\` as a node, and runs its runtime-shim,
cni-manager and kubelet-agent in the foreground.

  --token ID.SECRET         the bootstrap token printed by berth init
  --server https://H:P      the Store API of the control plane
  --ca-cert-hash sha256:HEX the cluster CA's public-key hash printed by berth init
  --pod-cidr CIDR           this node's pod range, e.g. 10.244.1.0/24
  --node-name NAME          this node's name (default: the hostname)
  --node-ip IP              the address to report (default: this machine's source address towards the server)
  --network bridge|routed   pod network mode (default bridge)
  --cgroup-root DIR         cgroup filesystem root for the kubelet-agent (default /sys/fs/cgroup)
  --timeout DURATION        how long to wait for the certificate (default 2m)

Environment: BERTH_RUN_DIR (sockets, default /run/berth), BERTH_STATE_DIR (state, default /var/lib/berth)
`;

export interface JoinOptions {
  runDir?: string;
  stateDir?: string;
  out?: NodeJS.WritableStream;
  signal?: AbortSignal;
  token: string;
  server: string;
  caCertHash: string;
  podCidr: string;
  nodeName?: string;
  nodeIp?: string;
  network?: NetworkMode;
  cgroupRoot?: string;
  timeoutMs?: number;
}

const NODE_NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function parseJoinArgs(args: string[]): JoinOptions | 'help' {
  const v = parseFlags(args, {
    token: { type: 'string' }, server: { type: 'string' }, 'ca-cert-hash': { type: 'string' }, 'pod-cidr': { type: 'string' },
    'node-name': { type: 'string' }, 'node-ip': { type: 'string' }, network: { type: 'string' }, 'cgroup-root': { type: 'string' }, timeout: { type: 'string' },
  });
  if (v.help) return 'help';
  for (const f of ['token', 'server', 'ca-cert-hash', 'pod-cidr'] as const) if (v[f] === undefined) throw new CommandUsageError(`--${f} is required`);
  if (!/^[a-z0-9]{6}\.[a-z0-9]{16}$/.test(v.token!)) throw new CommandUsageError('--token: expected <id>.<secret> as [a-z0-9]{6}.[a-z0-9]{16}');
  const m = /^https:\/\/(\d{1,3}(?:\.\d{1,3}){3}|[a-z0-9.-]+):(\d{1,5})\/?$/i.exec(v.server!);
  if (!m || Number(m[2]) > 65535) throw new CommandUsageError(`--server: expected https://host:port, got "${v.server}"`);
  if (!/^sha256:[0-9a-f]{64}$/.test(v['ca-cert-hash']!)) throw new CommandUsageError(`--ca-cert-hash: expected sha256:<64 hex digits>, got "${v['ca-cert-hash']}"`);
  if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(v['pod-cidr']!)) throw new CommandUsageError(`--pod-cidr: expected an IPv4 CIDR such as 10.244.1.0/24, got "${v['pod-cidr']}"`);
  const o: JoinOptions = { token: v.token!, server: `${m[1]}:${m[2]}`, caCertHash: v['ca-cert-hash']!, podCidr: v['pod-cidr']! };
  if (v['node-name'] !== undefined) {
    if (!NODE_NAME_RE.test(v['node-name']) || v['node-name'].length > 253) throw new CommandUsageError(`--node-name: "${v['node-name']}" is not a valid node name (lowercase DNS subdomain)`);
    o.nodeName = v['node-name'];
  }
  if (v['node-ip'] !== undefined) {
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(v['node-ip'])) throw new CommandUsageError(`--node-ip: expected an IPv4 address, got "${v['node-ip']}"`);
    o.nodeIp = v['node-ip'];
  }
  if (v.network !== undefined) o.network = parseNetwork(v.network);
  if (v['cgroup-root'] !== undefined) o.cgroupRoot = path.resolve(v['cgroup-root']);
  if (v.timeout !== undefined) o.timeoutMs = parseDuration(v.timeout, '--timeout');
  return o;
}

/**
 * Finds the cluster CA in the server's TLS handshake by the pinned public-key hash, and checks
 * that the server's own certificate is signed by it. Nothing is sent to the server but the
 * handshake itself, so a man in the middle learns no token.
 */
export async function discoverCa(server: string, pin: string, timeoutMs = 10_000): Promise<string> {
  const i = server.lastIndexOf(':');
  const host = server.slice(0, i);
  const port = Number(server.slice(i + 1));
  const chain = await new Promise<tls.DetailedPeerCertificate>((resolve, reject) => {
    const sock = tls.connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'], ...(/^[\d.]+$/.test(host) ? {} : { servername: host }) });
    const t = setTimeout(() => { sock.destroy(); reject(new Error(`${server}: no TLS handshake within ${timeoutMs / 1000} s`)); }, timeoutMs);
    sock.once('secureConnect', () => { clearTimeout(t); const c = sock.getPeerCertificate(true); sock.destroy(); resolve(c); });
    sock.once('error', (e) => { clearTimeout(t); reject(new Error(`cannot reach ${server}: ${e.message}`)); });
  });
  const certs: crypto.X509Certificate[] = [];
  const seen = new Set<string>();
  for (let c: tls.DetailedPeerCertificate | undefined = chain; c?.raw && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256);
    certs.push(new crypto.X509Certificate(c.raw));
  }
  if (!certs.length) throw new Error(`${server} presented no certificate`);
  const ca = certs.find((c) => c.ca && caCertHash(c.toString()) === pin);
  if (!ca) throw new Error(`${server}: no CA certificate in its TLS handshake matches --ca-cert-hash ${pin} (the server is not the cluster you were given, or the hash is wrong)`);
  if (!(certs[0].checkIssued(ca) && certs[0].verify(ca.publicKey))) throw new Error(`${server}: its certificate is not signed by the pinned CA`);
  return ca.toString();
}

/** This machine's source address towards `host` (what the kubelet would report as InternalIP). */
export function sourceAddressTowards(host: string): string {
  const out = execFileSync('ip', ['-4', 'route', 'get', host], { encoding: 'utf8' });
  const m = / src (\d+\.\d+\.\d+\.\d+)/.exec(out);
  if (!m) throw new Error(`no route from this machine to ${host}: pass --node-ip`);
  return m[1];
}

export async function join(opts: JoinOptions): Promise<number> {
  const out = opts.out ?? process.stdout;
  const runDir = path.resolve(opts.runDir ?? defaultRunDir());
  const stateDir = path.resolve(opts.stateDir ?? stateRoot());
  const node = opts.nodeName ?? os.hostname().toLowerCase();
  const run = new ForegroundRun('join', runDir, stateDir, out, opts.signal);
  if (!(await run.begin())) return 1;
  const say = (s: string) => run.say(s);
  return run.run(async () => {
    const caPem = await discoverCa(opts.server, opts.caCertHash);
    const pkiDir = path.join(stateDir, 'pki');
    fs.mkdirSync(pkiDir, { recursive: true, mode: 0o700 });
    const caFile = path.join(pkiDir, 'ca.crt');
    fs.writeFileSync(caFile, caPem, { mode: 0o644 });
    say(`cluster CA   pinned by ${opts.caCertHash} (${caFile})`);
    const certFile = path.join(pkiDir, `node-${node}.crt`);
    const keyFile = path.join(pkiDir, `node-${node}.key`);
    const got = await bootstrapNodeCertificate({
      server: opts.server, caFile, token: opts.token, node, certFile, keyFile, timeoutMs: opts.timeoutMs ?? 120_000, signal: run.stop.signal,
      onRequested: (name) => say(`certificate signing request ${name} sent; waiting for it to be approved and signed ...`),
    });
    say(got === 'existing' ? `node certificate ${certFile} (issued earlier, still valid)` : `node certificate ${certFile} (CN=system:node:${node}, O=system:nodes)`);
    run.checkStop();
    const ip = opts.nodeIp ?? sourceAddressTowards(opts.server.slice(0, opts.server.lastIndexOf(':')));
    const children = startNode(run, {
      name: node, ip, podCidr: opts.podCidr, network: opts.network ?? 'bridge', runDir, stateDir, cgroupRoot: opts.cgroupRoot,
      store: { tcp: opts.server, ca: caFile, cert: certFile, key: keyFile },
    });
    const statuses = await waitAllServing(run, children);
    run.checkStop();
    children.forEach((c, i) => say(`${c.name.padEnd(26)} ${c.socket.padEnd(50)} ${statuses[i]}`));
    if (!statuses.every((s) => s === 'SERVING')) throw new Error(`not every node service is serving; logs are in ${run.logDir}`);
    say('');
    say(`This node (${node}, ${ip}, pods ${opts.podCidr}) has joined the cluster at ${opts.server}.`);
    say('Press Ctrl-C to stop its services.');
  });
}
