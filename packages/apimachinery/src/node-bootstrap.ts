// Node TLS bootstrap, shared by `berth join` and berth-kubelet-agent --bootstrap-token (what the
// kubelet does with its bootstrap kubeconfig): a node that has no valid client certificate
// authenticates with a bootstrap token, sends a CertificateSigningRequest for
// CN=system:node:<name>, O=system:nodes, waits for the cluster to sign it, and keeps the key and
// certificate on disk so that a restart re-uses them instead of asking again.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { requestCertificate } from './certificates';
import { StoreClient } from './client';

/**
 * True when certFile/keyFile hold a certificate for system:node:<node> issued by the CA in
 * caPem, matching the key and valid for at least another hour.
 */
export function validNodeCertificate(certFile: string, keyFile: string, caPem: string, node: string): boolean {
  try {
    const cert = new crypto.X509Certificate(fs.readFileSync(certFile));
    const ca = new crypto.X509Certificate(caPem);
    const key = crypto.createPrivateKey(fs.readFileSync(keyFile));
    return cert.checkIssued(ca) && cert.verify(ca.publicKey) && cert.checkPrivateKey(key) && Date.parse(cert.validTo) > Date.now() + 3_600_000
      && cert.subject.split('\n').includes(`CN=system:node:${node}`);
  } catch {
    return false;
  }
}

export interface NodeBootstrapOptions {
  /** The Store's TLS address, host:port. */
  server: string;
  /** The cluster CA the Store's certificate must chain to. */
  caFile: string;
  /** Bootstrap token <id>.<secret>. */
  token: string;
  node: string;
  certFile: string;
  keyFile: string;
  /** How long to wait for the signed certificate (default 2 minutes). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Called with the request's name once it is sent (to tell an operator what to approve). */
  onRequested?: (name: string) => void;
}

/** Writes a file by rename so that a crash never leaves half a key or certificate behind. */
function writeAtomic(file: string, data: string, mode: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  try {
    fs.writeFileSync(tmp, data, { mode, flag: 'wx' });
    fs.renameSync(tmp, file);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * Makes sure certFile/keyFile hold this node's client certificate: 'existing' when a valid one
 * is there already, 'issued' when it was requested now with the bootstrap token.
 */
export async function bootstrapNodeCertificate(o: NodeBootstrapOptions): Promise<'existing' | 'issued'> {
  const caPem = fs.readFileSync(o.caFile, 'utf8');
  if (validNodeCertificate(o.certFile, o.keyFile, caPem, o.node)) return 'existing';
  const client = new StoreClient({ target: o.server, tls: { caFile: o.caFile }, bearerToken: o.token, defaultDeadlineMs: 10_000 });
  try {
    const { keyPem, certPem } = await requestCertificate(client, {
      commonName: `system:node:${o.node}`, organizations: ['system:nodes'],
      // The node's name in the request's name tells an operator at a glance whose it is.
      name: `node-csr-${o.node}-${crypto.randomBytes(4).toString('hex')}`.slice(0, 253), timeoutMs: o.timeoutMs ?? 120_000, signal: o.signal, onCreated: o.onRequested,
    });
    // The key first: a certificate without its key is never on disk.
    writeAtomic(o.keyFile, keyPem, 0o600);
    writeAtomic(o.certFile, certPem, 0o644);
    return 'issued';
  } finally {
    client.raw.close();
  }
}
