// CertificateSigningRequest rules shared by the Store, its built-in signer and clients such as
// `berth join`: parsing and checking the PKCS#10 request, which requests the kubelet client
// signer may approve on its own, and making a node's key and request.
//
// @peculiar/x509 (with the reflect-metadata polyfill its ASN.1 schemas need, loaded first) is
// required on first use, not at import: every component imports this package, and only the
// Store's signer and a joining node handle certificates.
import type * as X509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import type { core } from '@berth/api';
import { NODE_USER_PREFIX, SYSTEM_NODES } from './auth/types';
import type { FieldError } from './validation';
import type { StoreClient } from './client';
import { kindInfo, wrap } from './kinds';

let lib: typeof X509 | undefined;
/** @peculiar/x509, loaded (after reflect-metadata) the first time it is needed. */
export function x509(): typeof X509 {
  if (!lib) {
    require('reflect-metadata');
    lib = require('@peculiar/x509') as typeof X509;
  }
  return lib;
}

/** Node client certificates (CN=system:node:<name>, O=system:nodes): the built-in signer. */
export const KUBELET_CLIENT_SIGNER = 'kubernetes.io/kube-apiserver-client-kubelet';
export const KUBE_APISERVER_CLIENT_SIGNER = 'kubernetes.io/kube-apiserver-client';
export const KUBELET_SERVING_SIGNER = 'kubernetes.io/kubelet-serving';

/** Kubernetes' KeyUsage values (certificates.k8s.io/v1). */
export const KEY_USAGES = [
  'signing', 'digital signature', 'content commitment', 'key encipherment', 'key agreement', 'data encipherment',
  'cert sign', 'crl sign', 'encipher only', 'decipher only', 'any', 'server auth', 'client auth', 'code signing',
  'email protection', 's/mime', 'ipsec end system', 'ipsec tunnel', 'ipsec user', 'timestamping', 'ocsp signing',
  'microsoft sgc', 'netscape sgc',
] as const;

/** What a node client certificate may ask for (Kubernetes' kubelet client signer rule). */
const NODE_CLIENT_USAGES = new Set(['client auth', 'digital signature', 'key encipherment']);

export class CsrError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'CsrError';
  }
}

export interface ParsedCsr {
  request: X509.Pkcs10CertificateRequest;
  /** Every attribute of the subject in order, e.g. [["CN","system:node:a"],["O","system:nodes"]]. */
  subject: [string, string][];
  commonName: string;
  organizations: string[];
  /** Any subjectAltName the request carries (DNS, IP, email, URI). */
  sans: string[];
}

/** The WebCrypto type @peculiar/x509 expects (Node's webcrypto, typed without the DOM lib). */
export type X509Crypto = NonNullable<Parameters<X509.Pkcs10CertificateRequest['verify']>[0]>;

const PEM_RE = /^-----BEGIN CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE REQUEST-----\s*$/;

/** Parses spec.request: exactly one PEM "CERTIFICATE REQUEST" block. */
export function parseCsr(request: Uint8Array | string): ParsedCsr {
  const pem = (typeof request === 'string' ? request : Buffer.from(request).toString('latin1')).trim();
  if (!pem) throw new CsrError('spec.request', 'Required value');
  if (!PEM_RE.test(`${pem}\n`)) throw new CsrError('spec.request', 'Invalid value: "<PEM data>": PEM block type must be CERTIFICATE REQUEST');
  let req: X509.Pkcs10CertificateRequest;
  try {
    req = new (x509().Pkcs10CertificateRequest)(pem);
  } catch (e) {
    throw new CsrError('spec.request', `Invalid value: "<PEM data>": ${(e as Error).message}`);
  }
  const subject: [string, string][] = [];
  for (const rdn of req.subjectName.toJSON()) for (const [k, vs] of Object.entries(rdn)) for (const v of vs) subject.push([k, v]);
  const sans: string[] = [];
  const ext = req.getExtension('2.5.29.17'); // subjectAltName
  if (ext) for (const n of new (x509().SubjectAlternativeNameExtension)(ext.rawData).names.items) sans.push(`${n.type}:${n.value}`);
  return {
    request: req,
    subject,
    commonName: subject.filter(([k]) => k === 'CN').map(([, v]) => v)[0] ?? '',
    organizations: subject.filter(([k]) => k === 'O').map(([, v]) => v),
    sans,
  };
}

/** Checks the request's self-signature (proof that the requester holds the private key). */
export async function verifyCsrSignature(p: ParsedCsr): Promise<boolean> {
  try {
    return await p.request.verify(webcrypto as unknown as X509Crypto);
  } catch {
    return false;
  }
}

/**
 * The node a kubelet client request is for, or why it is not one: subject exactly
 * CN=system:node:<name>, O=system:nodes, no subjectAltNames, usages within client auth,
 * digital signature and key encipherment (client auth required).
 */
export function nodeClientRequest(spec: core.CertificateSigningRequestSpec, p: ParsedCsr): { node: string } | { reason: string } {
  if (spec.signerName !== KUBELET_CLIENT_SIGNER) return { reason: `signerName is ${spec.signerName}, not ${KUBELET_CLIENT_SIGNER}` };
  const other = p.subject.filter(([k]) => k !== 'CN' && k !== 'O');
  if (other.length) return { reason: `subject has attributes other than CN and O: ${other.map(([k, v]) => `${k}=${v}`).join(', ')}` };
  if (p.subject.filter(([k]) => k === 'CN').length !== 1 || !p.commonName.startsWith(NODE_USER_PREFIX) || p.commonName.length === NODE_USER_PREFIX.length) {
    return { reason: `subject CN must be ${NODE_USER_PREFIX}<node name>, got ${JSON.stringify(p.commonName)}` };
  }
  if (p.organizations.length !== 1 || p.organizations[0] !== SYSTEM_NODES) return { reason: `subject O must be exactly ${SYSTEM_NODES}, got ${JSON.stringify(p.organizations)}` };
  if (p.sans.length) return { reason: `a node client certificate may not have subjectAltNames (${p.sans.join(', ')})` };
  if (!spec.usages.includes('client auth')) return { reason: 'usages must include "client auth"' };
  const extra = spec.usages.filter((u) => !NODE_CLIENT_USAGES.has(u));
  if (extra.length) return { reason: `usages not allowed for a node client certificate: ${extra.join(', ')}` };
  return { node: p.commonName.slice(NODE_USER_PREFIX.length) };
}

const NODE_SERVING_USAGES = new Set(['server auth', 'digital signature', 'key encipherment']);

/**
 * The node a kubelet serving request is for, or why it is not one: subject exactly
 * CN=system:node:<name>, O=system:nodes, at least one DNS or IP subjectAltName and no others,
 * usages within server auth, digital signature and key encipherment (server auth required).
 * The built-in signer signs these after an administrator approves them (never on its own).
 */
export function kubeletServingRequest(spec: core.CertificateSigningRequestSpec, p: ParsedCsr): { node: string } | { reason: string } {
  if (spec.signerName !== KUBELET_SERVING_SIGNER) return { reason: `signerName is ${spec.signerName}, not ${KUBELET_SERVING_SIGNER}` };
  const subject = nodeClientRequest({ ...spec, signerName: KUBELET_CLIENT_SIGNER, usages: ['client auth'] }, { ...p, sans: [] });
  if ('reason' in subject) return subject;
  const other = p.sans.filter((n) => !/^(dns|ip):/.test(n));
  if (other.length) return { reason: `only DNS and IP subjectAltNames are allowed in a kubelet serving certificate, got ${other.join(', ')}` };
  if (!p.sans.length) return { reason: 'a kubelet serving certificate needs at least one DNS or IP subjectAltName' };
  if (!spec.usages.includes('server auth')) return { reason: 'usages must include "server auth"' };
  const extra = spec.usages.filter((u) => !NODE_SERVING_USAGES.has(u));
  if (extra.length) return { reason: `usages not allowed for a kubelet serving certificate: ${extra.join(', ')}` };
  return subject;
}

/** Validation of a request's own fields (spec, conditions); field paths as Kubernetes names them. */
export function csrProblems(csr: core.CertificateSigningRequest): FieldError[] {
  const out: FieldError[] = [];
  const s = csr.spec;
  if (!s) return [{ type: 'Required', field: 'spec' }];
  if (!s.request.length) out.push({ type: 'Required', field: 'spec.request' });
  else {
    try { parseCsr(s.request); } catch (e) {
      if (!(e instanceof CsrError)) throw e;
      out.push({ type: 'Invalid', field: 'spec.request', value: '<PEM data>', detail: e.message.replace(/^spec\.request: (Invalid value: "<PEM data>": )?/, '') });
    }
  }
  if (!s.signerName) out.push({ type: 'Required', field: 'spec.signerName' });
  else if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/[-a-zA-Z0-9._~%!$&'()*+,;=:@/]+$/.test(s.signerName)) out.push({ type: 'Invalid', field: 'spec.signerName', value: s.signerName, detail: "must be a fully qualified domain and path of the form 'example.com/signer-name'" });
  if (!s.usages.length) out.push({ type: 'Required', field: 'spec.usages' });
  s.usages.forEach((u, i) => {
    if (!(KEY_USAGES as readonly string[]).includes(u)) out.push({ type: 'Unsupported', field: `spec.usages[${i}]`, value: u, detail: `supported values: ${KEY_USAGES.map((k) => JSON.stringify(k)).join(', ')}` });
    else if (s.usages.indexOf(u) !== i) out.push({ type: 'Duplicate', field: `spec.usages[${i}]`, value: u });
  });
  if (s.expirationSeconds !== undefined && s.expirationSeconds < 600) out.push({ type: 'Invalid', field: 'spec.expirationSeconds', value: s.expirationSeconds, detail: 'may not specify a duration less than 600 seconds (10 minutes)' });
  const conds = csr.status?.conditions ?? [];
  const seen = new Set<string>();
  conds.forEach((c, i) => {
    const f = `status.conditions[${i}]`;
    if (!c.type) out.push({ type: 'Required', field: `${f}.type` });
    if (!['True', 'False', 'Unknown'].includes(c.status)) out.push({ type: 'Unsupported', field: `${f}.status`, value: c.status, detail: 'supported values: "False", "True", "Unknown"' });
    else if ((c.type === 'Approved' || c.type === 'Denied') && c.status !== 'True') out.push({ type: 'Unsupported', field: `${f}.status`, value: c.status, detail: 'supported values: "True"' });
    if (['Approved', 'Denied', 'Failed'].includes(c.type) && seen.has(c.type)) out.push({ type: 'Duplicate', field: `${f}.type`, value: c.type });
    seen.add(c.type);
  });
  if (seen.has('Approved') && seen.has('Denied')) out.push({ type: 'Invalid', field: 'status.conditions', value: 'Approved', detail: 'Approved and Denied conditions are mutually exclusive' });
  const cert = csr.status?.certificate;
  if (cert?.length) {
    if (!seen.has('Approved')) out.push({ type: 'Forbidden', field: 'status.certificate', detail: 'certificate can only be set on an approved request' });
    if (!Buffer.from(cert).toString('latin1').trim().startsWith('-----BEGIN CERTIFICATE-----')) out.push({ type: 'Invalid', field: 'status.certificate', value: '<certificate data>', detail: 'must be PEM CERTIFICATE blocks' });
  }
  return out;
}

export function csrCondition(csr: core.CertificateSigningRequest | undefined, type: string): core.CertificateSigningRequestCondition | undefined {
  return csr?.status?.conditions.find((c) => c.type === type && c.status === 'True');
}

/** "Approved,Issued" / "Denied" / "Pending": the CONDITION column of `berth get csr`. */
export function csrConditionText(csr: core.CertificateSigningRequest): string {
  const parts = (csr.status?.conditions ?? []).filter((c) => c.status === 'True').map((c) => c.type);
  if (csr.status?.certificate?.length) parts.push('Issued');
  return parts.length ? parts.join(',') : 'Pending';
}

/** A fresh EC P-256 key and a signed request for it (what a joining node sends). */
export async function generateKeyAndCsr(subject: { commonName: string; organizations?: string[]; dnsNames?: string[]; ipAddresses?: string[] }): Promise<{ keyPem: string; csrPem: string }> {
  const esc = (v: string) => v.replace(/([,+"\\<>;=#])/g, '\\$1');
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as Parameters<typeof X509.Pkcs10CertificateRequestGenerator.create>[0]['keys'];
  const name = [`CN=${esc(subject.commonName)}`, ...(subject.organizations ?? []).map((o) => `O=${esc(o)}`)].join(', ');
  const sans = [...(subject.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })), ...(subject.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value }))];
  const extensions = sans.length ? [new (x509().SubjectAlternativeNameExtension)(sans)] : [];
  const csr = await x509().Pkcs10CertificateRequestGenerator.create({ name, keys, signingAlgorithm: alg, extensions }, webcrypto as unknown as X509Crypto);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
  return { keyPem, csrPem: `${csr.toString('pem')}\n` };
}

/** The request was denied by an administrator or refused by the signer. */
export class CertificateRequestRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertificateRequestRefusedError';
  }
}

export interface CertificateRequestOptions {
  commonName: string;
  organizations?: string[];
  /** Default: the kubelet client signer (what the built-in approver approves for nodes). */
  signerName?: string;
  usages?: string[];
  expirationSeconds?: number;
  /** Name of the request; default a generated "node-csr-xxxxx" / "csr-xxxxx". */
  name?: string;
  /** How long to wait for the certificate (default 5 minutes). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Called with the request's name once it is created (before the wait). */
  onCreated?: (name: string) => void;
}

/**
 * What a joining node (or any client) does to get a certificate from the cluster: makes a key,
 * sends a CertificateSigningRequest, and waits until it is issued — or denied, or failed.
 */
export async function requestCertificate(client: StoreClient, o: CertificateRequestOptions): Promise<{ keyPem: string; certPem: string; name: string }> {
  const { keyPem, csrPem } = await generateKeyAndCsr({ commonName: o.commonName, organizations: o.organizations });
  const signerName = o.signerName ?? KUBELET_CLIENT_SIGNER;
  const created = await client.create(wrap(kindInfo('CertificateSigningRequest')!, {
    apiVersion: 'certificates.k8s.io/v1', kind: 'CertificateSigningRequest',
    metadata: { name: o.name ?? '', generateName: o.name ? '' : signerName === KUBELET_CLIENT_SIGNER ? 'node-csr-' : 'csr-' } as core.ObjectMeta,
    spec: { request: Buffer.from(csrPem), signerName, usages: o.usages ?? ['client auth', 'digital signature', 'key encipherment'], expirationSeconds: o.expirationSeconds, username: '', uid: '', groups: [], extra: {} },
    status: undefined,
  } as core.CertificateSigningRequest as never));
  const name = created.certificateSigningRequest!.metadata!.name;
  o.onCreated?.(name);
  const ac = new AbortController();
  const stop = () => ac.abort();
  o.signal?.addEventListener('abort', stop, { once: true });
  const timer = setTimeout(stop, o.timeoutMs ?? 300_000);
  const settled = (csr: core.CertificateSigningRequest | undefined): string | undefined => {
    const bad = csrCondition(csr, 'Denied') ?? csrCondition(csr, 'Failed');
    if (bad) throw new CertificateRequestRefusedError(`certificate signing request ${name} was ${bad.type === 'Denied' ? 'denied' : 'refused by the signer'}: ${bad.reason}${bad.message ? `: ${bad.message}` : ''}`);
    return csr?.status?.certificate?.length ? Buffer.from(csr.status.certificate).toString() : undefined;
  };
  try {
    let rv = created.certificateSigningRequest!.metadata!.resourceVersion;
    while (!ac.signal.aborted) {
      try {
        for await (const e of client.watch({ resource: 'certificatesigningrequests', fieldSelector: `metadata.name=${name}`, resourceVersion: rv }, ac.signal)) {
          if (e.type === 'ERROR') break; // too old: read it again below
          const csr = e.object?.certificateSigningRequest;
          if (csr?.metadata?.resourceVersion) rv = csr.metadata.resourceVersion;
          const cert = e.type === 'BOOKMARK' ? undefined : settled(csr);
          if (cert) return { keyPem, certPem: cert, name };
        }
      } catch (e) {
        if (ac.signal.aborted) break;
        if (e instanceof CertificateRequestRefusedError) throw e;
        // Anything else broke the stream: read the request and watch again, after a breath.
        await new Promise((r) => setTimeout(r, 500));
      }
      if (ac.signal.aborted) break;
      // The stream ended (server timeout, "too old", a reconnect): read the request and go on.
      const cur = await client.get('certificatesigningrequests', '', name);
      const cert = settled(cur.certificateSigningRequest);
      if (cert) return { keyPem, certPem: cert, name };
      rv = cur.certificateSigningRequest!.metadata!.resourceVersion;
    }
    throw new Error(o.signal?.aborted ? `waiting for certificate signing request ${name} was cancelled` : `certificate signing request ${name} is still pending: an administrator may approve it with "berth certificate approve ${name}"`);
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', stop);
  }
}
