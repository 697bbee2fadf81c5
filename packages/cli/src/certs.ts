// `berth certs`: the cluster CA and the component certificates, made with openssl. openssl is
// Debian's maintained implementation (security updates through apt), already a bootstrap
// dependency, and needs no npm install scripts; keys are P-256 EC, private keys mode 0600.
// Identities follow Kubernetes: CN = user, O = groups (system:masters for the admin,
// system:node:<name> in system:nodes for a kubelet, system:kube-scheduler for the scheduler).
import { execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface CertPair { cert: string; key: string }

export interface ClusterPki {
  dir: string;
  ca: CertPair;
  server: CertPair;
  admin: CertPair;
  scheduler: CertPair;
  nodes: Record<string, CertPair>;
}

export interface PkiOptions {
  /** Extra subjectAltNames of the server certificate (IPs or DNS names). */
  sans?: string[];
  /** Nodes to issue kubelet client certificates for. */
  nodes?: string[];
  /** Validity of leaf certificates (default 365 days; the CA gets 10 years). */
  days?: number;
}

function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args[0]} failed: ${err.stderr?.toString().trim() || err.message}`);
  }
}

function writeKeyFile(p: string): void {
  fs.chmodSync(p, 0o600);
}

/** Creates the cluster CA in `dir` unless it exists. */
export function ensureCa(dir: string): CertPair {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = { cert: path.join(dir, 'ca.crt'), key: path.join(dir, 'ca.key') };
  if (fs.existsSync(ca.cert) && fs.existsSync(ca.key)) return ca;
  const old = process.umask(0o077);
  try {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '3650', '-subj', '/CN=berth-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  } finally {
    process.umask(old);
  }
  writeKeyFile(ca.key);
  return ca;
}

function subjectPart(s: string): string {
  // openssl -subj syntax: '/' and '=' inside a value must be escaped; reject control characters.
  if (/[\x00-\x1f]/.test(s)) throw new Error(`invalid certificate name ${JSON.stringify(s)}`);
  return s.replace(/([/=+\\])/g, '\\$1');
}

/** Issues a certificate signed by the CA: client (CN/O identity) or server (with SANs). */
export function issue(dir: string, ca: CertPair, name: string, o: { cn: string; groups?: string[]; server?: boolean; sans?: string[]; days?: number }): CertPair {
  if (!/^[a-z0-9][a-z0-9.-]*$/.test(name)) throw new Error(`certificate file name ${JSON.stringify(name)} must be lowercase letters, digits, '.' or '-'`);
  const pair = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  const subj = `${(o.groups ?? []).map((g) => `/O=${subjectPart(g)}`).join('')}/CN=${subjectPart(o.cn)}`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-certs-'));
  const old = process.umask(0o077);
  try {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', pair.key, '-out', path.join(tmp, 'req.csr'), '-subj', subj], tmp);
    const ext = o.server
      ? `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${(o.sans ?? []).map((s) => (/^[\d.]+$|:/.test(s) ? `IP:${s}` : `DNS:${s}`)).join(',')}\n`
      : 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n';
    fs.writeFileSync(path.join(tmp, 'ext'), ext);
    openssl(['x509', '-req', '-in', path.join(tmp, 'req.csr'), '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${crypto.randomBytes(16).toString('hex')}`, '-out', pair.cert, '-days', String(o.days ?? 365), '-extfile', path.join(tmp, 'ext')], tmp);
  } finally {
    process.umask(old);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  writeKeyFile(pair.key);
  return pair;
}

/** The whole cluster PKI under `dir` (idempotent for the CA; leaf certificates are reissued). */
export function createClusterPki(dir: string, opts: PkiOptions = {}): ClusterPki {
  const ca = ensureCa(dir);
  const days = opts.days;
  const sans = [...new Set(['localhost', '127.0.0.1', '::1', os.hostname(), ...(opts.sans ?? [])])];
  const nodes: Record<string, CertPair> = {};
  for (const n of opts.nodes ?? []) nodes[n] = issue(dir, ca, `node-${n}`, { cn: `system:node:${n}`, groups: ['system:nodes'], days });
  return {
    dir,
    ca,
    server: issue(dir, ca, 'etcd-client', { cn: 'berth-etcd-client', server: true, sans, days }),
    admin: issue(dir, ca, 'admin', { cn: 'admin', groups: ['system:masters'], days }),
    scheduler: issue(dir, ca, 'scheduler', { cn: 'system:kube-scheduler', days }),
    nodes,
  };
}

/** Reads a certificate's subject as `CN=...` / `O=...` (for `berth certs` output and tests). */
export function certSubject(certFile: string): { cn: string; groups: string[]; notAfter: string } {
  const x = new crypto.X509Certificate(fs.readFileSync(certFile));
  const lines = x.subject.split('\n');
  return { cn: lines.find((l) => l.startsWith('CN='))?.slice(3) ?? '', groups: lines.filter((l) => l.startsWith('O=')).map((l) => l.slice(2)), notAfter: x.validTo };
}
