// The built-in certificate approver and signer (kube-controller-manager's csrapproving and
// csrsigning controllers), on when berth-etcd-client has --cluster-signing-cert-file and
// --cluster-signing-key-file. The approver approves on its own only kubelet client requests
// (CN=system:node:<name>, O=system:nodes, client usages) whose requester RBAC lets create
// certificatesigningrequests/nodeclient (a bootstrapper) or /selfnodeclient (the node itself,
// renewing); everything else waits for an administrator (`berth certificate approve`). The
// signer issues certificates for approved requests to the kubelet client, kubelet serving
// (a node's own server certificate, with its DNS/IP names) and kube-apiserver-client signers,
// with the cluster CA.
//
// @peculiar/x509 is loaded through apimachinery's x509() (after its reflect-metadata polyfill),
// on first use: only a Store with --cluster-signing-* pays for it.
import type * as X509 from '@peculiar/x509';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { core, store } from '@berth/api';
import {
  KUBELET_CLIENT_SIGNER,
  KUBELET_SERVING_SIGNER,
  KUBE_APISERVER_CLIENT_SIGNER,
  csrCondition,
  kubeletServingRequest,
  nodeClientRequest,
  parseCsr,
  verifyCsrSignature,
  x509,
  type ParsedCsr,
  type UserInfo,
  type X509Crypto,
} from '@berth/apimachinery';
import { ConflictError, NotFoundError, type Logger } from '@berth/common';
import type { Registry } from './registry';

const DAY = 24 * 3600;
const webcrypto = crypto.webcrypto as unknown as X509Crypto;
const CLIENT_USAGES = new Set(['client auth', 'digital signature', 'key encipherment']);

/** The cluster CA as a signer: issues leaf certificates for approved requests. */
export class ClusterSigner {
  private constructor(
    readonly caCert: X509.X509Certificate,
    private readonly key: CryptoKeyLike,
    private readonly alg: X509.Pkcs10CertificateRequestCreateParams['signingAlgorithm'],
    /** Longest validity issued (default one year). */
    readonly maxDurationSeconds: number,
  ) {}

  static async load(certFile: string, keyFile: string, maxDurationSeconds = 365 * DAY): Promise<ClusterSigner> {
    const read = (flag: string, f: string) => {
      try { return fs.readFileSync(f, 'utf8'); } catch (e) { throw new Error(`--${flag}: cannot read ${f}: ${(e as Error).message}`); }
    };
    let caCert: X509.X509Certificate;
    try { caCert = new (x509().X509Certificate)(read('cluster-signing-cert-file', certFile)); } catch (e) {
      throw new Error(`--cluster-signing-cert-file: ${certFile} is not a PEM certificate: ${(e as Error).message}`);
    }
    let keyObj: crypto.KeyObject;
    try { keyObj = crypto.createPrivateKey(read('cluster-signing-key-file', keyFile)); } catch (e) {
      throw new Error(`--cluster-signing-key-file: ${keyFile} is not a PEM private key: ${(e as Error).message}`);
    }
    // The key must be the certificate's: a mismatch would issue certificates nobody can verify.
    const pub = crypto.createPublicKey(keyObj).export({ format: 'der', type: 'spki' });
    if (!Buffer.from(caCert.publicKey.rawData).equals(pub)) throw new Error(`--cluster-signing-key-file: ${keyFile} is not the key of ${certFile}`);
    let alg: X509.Pkcs10CertificateRequestCreateParams['signingAlgorithm'];
    if (keyObj.asymmetricKeyType === 'ec') {
      const curve = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }[keyObj.asymmetricKeyDetails?.namedCurve ?? ''];
      if (!curve) throw new Error(`--cluster-signing-key-file: unsupported EC curve ${keyObj.asymmetricKeyDetails?.namedCurve}`);
      alg = { name: 'ECDSA', namedCurve: curve, hash: curve === 'P-256' ? 'SHA-256' : 'SHA-384' } as never;
    } else if (keyObj.asymmetricKeyType === 'rsa') {
      alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as never;
    } else {
      throw new Error(`--cluster-signing-key-file: unsupported key type ${keyObj.asymmetricKeyType} (use EC or RSA)`);
    }
    const der = keyObj.export({ format: 'der', type: 'pkcs8' });
    const key = await webcrypto.subtle.importKey('pkcs8', der, alg as never, false, ['sign']);
    return new ClusterSigner(caCert, key, alg, maxDurationSeconds);
  }

  /**
   * A certificate for the request, PEM: a client certificate, or with `serving` a server one
   * carrying the request's subjectAltNames. Validity: the shortest of the request's, the
   * maximum and the CA's.
   */
  async sign(p: ParsedCsr, usages: string[], expirationSeconds?: number, o: { serving?: boolean } = {}): Promise<string> {
    const now = Date.now();
    const seconds = Math.min(expirationSeconds ?? this.maxDurationSeconds, this.maxDurationSeconds);
    const notAfter = new Date(Math.min(now + seconds * 1000, this.caCert.notAfter.getTime()));
    // Backdated a little, as Kubernetes' signer does, so clocks a few minutes apart agree.
    const notBefore = new Date(Math.max(now - 5 * 60_000, this.caCert.notBefore.getTime()));
    const serial = crypto.randomBytes(16);
    serial[0] &= 0x7f; // positive
    let flags = 0;
    if (usages.includes('digital signature')) flags |= x509().KeyUsageFlags.digitalSignature;
    if (usages.includes('key encipherment')) flags |= x509().KeyUsageFlags.keyEncipherment;
    const cert = await x509().X509CertificateGenerator.create({
      serialNumber: serial.toString('hex'),
      subject: p.request.subjectName,
      issuer: this.caCert.subjectName,
      notBefore,
      notAfter,
      publicKey: p.request.publicKey,
      signingKey: this.key,
      signingAlgorithm: this.alg,
      extensions: [
        new (x509().BasicConstraintsExtension)(false, undefined, true),
        ...(flags ? [new (x509().KeyUsagesExtension)(flags, true)] : []),
        new (x509().ExtendedKeyUsageExtension)([o.serving ? x509().ExtendedKeyUsage.serverAuth : x509().ExtendedKeyUsage.clientAuth], false),
        ...(o.serving ? sanOf(p) : []),
        await x509().AuthorityKeyIdentifierExtension.create(this.caCert.publicKey, false, webcrypto),
        await x509().SubjectKeyIdentifierExtension.create(p.request.publicKey, false, webcrypto),
      ],
    }, webcrypto);
    return `${cert.toString('pem')}\n`;
  }
}

/** The request's subjectAltName extension, as the request carries it (DNS and IP names were checked). */
function sanOf(p: ParsedCsr): X509.Extension[] {
  const ext = p.request.getExtension('2.5.29.17');
  return ext ? [new (x509().SubjectAlternativeNameExtension)(ext.rawData)] : [];
}

type CryptoKeyLike = X509.X509CertificateCreateWithKeyParams['signingKey'];

const CONTROLLER: UserInfo = { name: 'system:kube-controller-manager', groups: ['system:masters', 'system:authenticated'], authenticator: 'internal' };

function nowRfc3339(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export interface CsrControllerOptions {
  /** Without a signer the controller only approves. */
  signer?: ClusterSigner;
  logger?: Logger;
}

/** Follows every CertificateSigningRequest (list + watch) and approves and signs what it may. */
export class CsrController {
  private readonly ac = new AbortController();
  private running: Promise<void> | undefined;
  constructor(private readonly registry: Registry, private readonly o: CsrControllerOptions = {}) {}

  start(): void {
    this.running ??= this.loop();
  }

  async close(): Promise<void> {
    this.ac.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const signal = this.ac.signal;
    while (!signal.aborted) {
      try {
        const l = await this.registry.list(store.ListRequest.fromPartial({ resource: 'certificatesigningrequests' }), CONTROLLER);
        for (const obj of l.items) await this.reconcileLogged(obj);
        if (signal.aborted) return;
        const req = store.WatchRequest.fromPartial({ resource: 'certificatesigningrequests', resourceVersion: l.resourceVersion });
        for await (const e of this.registry.watch(req, CONTROLLER, signal)) {
          if (e.type === 'ERROR') break; // too old: relist
          if ((e.type === 'ADDED' || e.type === 'MODIFIED') && e.object) await this.reconcileLogged(e.object);
        }
      } catch (err) {
        if (signal.aborted) return;
        this.o.logger?.warn({ err: String(err) }, 'certificate controller: watch broke; relisting');
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  // One bad request must not stop the others: it is logged and looked at again a little later
  // (as it is then), with a growing delay, and at once on its next change.
  private async reconcileLogged(obj: core.Object, attempt = 0): Promise<void> {
    const name = obj.certificateSigningRequest?.metadata?.name ?? '';
    try { await this.reconcile(obj); } catch (err) {
      this.o.logger?.error({ err: String(err), csr: name, attempt }, 'certificate controller: could not handle a request; retrying');
      const t = setTimeout(() => {
        if (this.ac.signal.aborted) return;
        void this.registry.get(store.GetRequest.fromPartial({ resource: 'certificatesigningrequests', name }), CONTROLLER)
          .then((cur) => this.reconcileLogged(cur, attempt + 1), () => undefined);
      }, Math.min(1000 * 2 ** attempt, 60_000));
      t.unref();
    }
  }

  /** One pass over one request: approve if it qualifies, then sign if approved and ours. */
  async reconcile(obj: core.Object): Promise<void> {
    let csr = obj.certificateSigningRequest;
    if (!csr?.spec || csr.metadata?.deletionTimestamp) return;
    const name = csr.metadata!.name;
    try {
      if (!csrCondition(csr, 'Approved') && !csrCondition(csr, 'Denied')) {
        const why = await this.autoApprovable(csr);
        if (typeof why === 'string') {
          this.o.logger?.debug({ csr: name, reason: why }, 'certificate request left for an administrator');
          return;
        }
        const next = structuredClone(obj);
        (next.certificateSigningRequest!.status ??= core.CertificateSigningRequestStatus.fromPartial({})).conditions.push({ type: 'Approved', status: 'True', reason: 'AutoApproved', message: `Auto approving kubelet client certificate for node ${why.node} after SubjectAccessReview.`, lastUpdateTime: nowRfc3339(), lastTransitionTime: nowRfc3339() });
        obj = await this.registry.updateStatus(next, CONTROLLER, { subresource: 'approval' });
        csr = obj.certificateSigningRequest!;
        this.o.logger?.info({ csr: name, node: why.node }, 'approved a kubelet client certificate request');
      }
      if (this.o.signer && csrCondition(csr, 'Approved') && !csrCondition(csr, 'Failed') && !csr.status?.certificate?.length) await this.issue(obj);
    } catch (err) {
      // A newer version of the request is on its way through the watch.
      if (err instanceof ConflictError || err instanceof NotFoundError) return;
      throw err;
    }
  }

  /** `{node}` if this request may be approved without an administrator, else why not. */
  private async autoApprovable(csr: core.CertificateSigningRequest): Promise<{ node: string } | string> {
    const spec = csr.spec!;
    if (spec.signerName !== KUBELET_CLIENT_SIGNER) return `signer ${spec.signerName} needs an administrator's approval`;
    let p: ParsedCsr;
    try { p = parseCsr(spec.request); } catch (e) { return (e as Error).message; }
    const r = nodeClientRequest(spec, p);
    if ('reason' in r) return r.reason;
    if (!(await verifyCsrSignature(p))) return 'the request\'s signature does not verify';
    // Ask RBAC about the requester, as Kubernetes' approver does with a SubjectAccessReview.
    const requester: UserInfo = { name: spec.username, uid: spec.uid, groups: spec.groups, authenticator: 'csr' };
    const may = (subresource: string) => this.registry.authorizer.authorize(requester, { verb: 'create', apiGroup: 'certificates.k8s.io', resource: 'certificatesigningrequests', subresource, namespace: '', name: '' }).allowed;
    if (spec.username === p.commonName && may('selfnodeclient')) return r;
    if (may('nodeclient')) return r;
    return `requester ${spec.username} may not create certificatesigningrequests/nodeclient or selfnodeclient for ${p.commonName}`;
  }

  private async issue(obj: core.Object): Promise<void> {
    const csr = obj.certificateSigningRequest!;
    const spec = csr.spec!;
    const name = csr.metadata!.name;
    if (![KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER, KUBE_APISERVER_CLIENT_SIGNER].includes(spec.signerName)) return; // someone else's signer
    let failure: string | undefined;
    let p: ParsedCsr | undefined;
    try { p = parseCsr(spec.request); } catch (e) { failure = (e as Error).message; }
    if (p && !failure) {
      if (spec.signerName === KUBELET_CLIENT_SIGNER || spec.signerName === KUBELET_SERVING_SIGNER) {
        const r = spec.signerName === KUBELET_CLIENT_SIGNER ? nodeClientRequest(spec, p) : kubeletServingRequest(spec, p);
        if ('reason' in r) failure = r.reason;
        // A node's serving certificate is for the node that asked (Kubernetes' signer rule).
        else if (spec.signerName === KUBELET_SERVING_SIGNER && spec.username !== p.commonName) failure = `a kubelet serving certificate for ${p.commonName} must be requested by that node, not ${spec.username}`;
      } else if (!spec.usages.includes('client auth') || spec.usages.some((u) => !CLIENT_USAGES.has(u))) {
        failure = `usages must be "client auth" with at most "digital signature" and "key encipherment", got ${JSON.stringify(spec.usages)}`;
      }
      if (!failure && !(await verifyCsrSignature(p))) failure = 'the request\'s signature does not verify';
    }
    const next = structuredClone(obj);
    const st = (next.certificateSigningRequest!.status ??= core.CertificateSigningRequestStatus.fromPartial({}));
    if (failure) {
      st.conditions.push({ type: 'Failed', status: 'True', reason: 'SignerValidationFailure', message: failure, lastUpdateTime: nowRfc3339(), lastTransitionTime: nowRfc3339() });
      await this.registry.updateStatus(next, CONTROLLER, { subresource: 'status' });
      this.o.logger?.warn({ csr: name, reason: failure }, 'refused to sign a certificate request');
      return;
    }
    st.certificate = Buffer.from(await this.o.signer!.sign(p!, spec.usages, spec.expirationSeconds, { serving: spec.signerName === KUBELET_SERVING_SIGNER }));
    await this.registry.updateStatus(next, CONTROLLER, { subresource: 'status' });
    this.o.logger?.info({ csr: name, signer: spec.signerName }, 'issued a certificate');
  }
}
