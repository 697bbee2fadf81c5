// Authentication of every Store call: a client certificate verified by the mTLS handshake
// (CN = user, O = groups), a bearer token from the static token file, or a bootstrap token
// (a kube-system Secret of type bootstrap.kubernetes.io/token). The node-local unix socket
// (mode 0600, root only) is the cluster administrator, like a root shell on the control plane.
// Anything else is refused: there is no anonymous user.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import type { Metadata } from '@grpc/grpc-js';
import type { AuthContext } from '@grpc/grpc-js/build/src/auth-context';
import { bootstrapUser, parseBootstrapToken, parseTokenFile, userFromCertSubject, withAuthenticated, type UserInfo } from '@berth/apimachinery';
import { UnauthenticatedError } from '@berth/common';
import type { Registry } from './registry';

export interface AuthnOptions {
  /** Static token file: `token,user,uid[,"group1,group2"]` lines. */
  tokenFile?: string;
  /** CA that client certificates must be signed by (the cluster CA). */
  clientCaFile?: string;
}

export interface CallIdentity {
  metadata: Metadata;
  getAuthContext(): AuthContext;
  getPeer(): string;
}

export const LOCAL_ADMIN: UserInfo = { name: 'system:admin', groups: withAuthenticated(['system:masters']), authenticator: 'unix' };

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

export class Authenticator {
  private tokens = new Map<string, UserInfo>();
  private readonly cas: crypto.X509Certificate[] = [];
  constructor(private readonly registry: Registry, opts: AuthnOptions = {}) {
    if (opts.tokenFile) this.tokens = parseTokenFile(fs.readFileSync(opts.tokenFile, 'utf8'), opts.tokenFile);
    if (opts.clientCaFile) {
      const pem = fs.readFileSync(opts.clientCaFile, 'utf8');
      for (const m of pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)) this.cas.push(new crypto.X509Certificate(m[0]));
    }
  }

  /**
   * Certificates already verified (their DER bytes as the key), with their validity window.
   * Parsing and checking the signature on every call was a fifth of the Store's CPU under load;
   * a client presents the same certificate on every call of its connection. Only the exact bytes
   * verified before match; expiry is still checked on every call. Bounded: the oldest go first.
   */
  private readonly verified = new Map<string, { notBefore: number; notAfter: number }>();
  private static readonly VERIFIED_MAX = 4096;

  /** A presented client certificate must be signed by the cluster CA and be valid now. */
  private verifyClientCert(raw: Buffer): void {
    const now = Date.now();
    const key = raw.toString('latin1');
    const known = this.verified.get(key);
    if (known) {
      if (now < known.notBefore || now > known.notAfter) throw new UnauthenticatedError('Unauthorized: x509: client certificate has expired or is not yet valid');
      return;
    }
    const cert = this.verifyClientCertFully(raw, now);
    if (this.verified.size >= Authenticator.VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(key, { notBefore: Date.parse(cert.validFrom), notAfter: Date.parse(cert.validTo) });
  }

  private verifyClientCertFully(raw: Buffer, now: number): crypto.X509Certificate {
    let cert: crypto.X509Certificate;
    try { cert = new crypto.X509Certificate(raw); } catch { throw new UnauthenticatedError('Unauthorized: unparseable client certificate'); }
    if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) throw new UnauthenticatedError('Unauthorized: x509: client certificate has expired or is not yet valid');
    if (!this.cas.some((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey))) throw new UnauthenticatedError('Unauthorized: x509: client certificate signed by unknown authority');
    if (cert.ca) throw new UnauthenticatedError('Unauthorized: x509: a CA certificate cannot be a client certificate');
    return cert;
  }

  /** `localAdmin`: the call came in on the node-local unix socket. */
  async authenticate(call: CallIdentity, localAdmin: boolean): Promise<UserInfo> {
    const auth = call.metadata.get('authorization')[0]?.toString();
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)$/i.exec(auth.trim());
      if (!m) throw new UnauthenticatedError('Unauthorized: the authorization header must be "Bearer <token>"');
      return this.byToken(m[1]);
    }
    const ctx = call.getAuthContext();
    const cert = ctx?.sslPeerCertificate;
    if (cert && cert.raw && cert.subject) {
      this.verifyClientCert(cert.raw);
      const u = userFromCertSubject(cert.subject as { CN?: string; O?: string | string[] });
      if (!u) throw new UnauthenticatedError('Unauthorized: the client certificate has no common name (CN)');
      return u;
    }
    if (localAdmin) return LOCAL_ADMIN;
    throw new UnauthenticatedError('Unauthorized: no client certificate or bearer token (anonymous requests are refused)');
  }

  private async byToken(token: string): Promise<UserInfo> {
    for (const [t, u] of this.tokens) if (safeEqual(t, token)) return u;
    const bt = parseBootstrapToken(token);
    if (bt) {
      const d = await this.registry.backend.get(this.registry.key({ resource: 'secrets', namespaced: true } as never, 'kube-system', `bootstrap-token-${bt.id}`));
      const secret = d.kv ? this.registry.decode(d.kv).obj.secret : undefined;
      const data = (k: string) => (secret?.data[k] ? Buffer.from(secret.data[k]).toString() : '');
      if (secret && secret.type === 'bootstrap.kubernetes.io/token' && data('token-id') === bt.id && safeEqual(data('token-secret'), bt.secret) && data('usage-bootstrap-authentication') === 'true') {
        const exp = data('expiration');
        // An expiration that does not parse is no expiration the token may rely on: refused.
        if (exp && !(Date.parse(exp) >= Date.now())) throw new UnauthenticatedError(Number.isNaN(Date.parse(exp)) ? 'Unauthorized: the bootstrap token has an invalid expiration (want RFC3339)' : 'Unauthorized: the bootstrap token has expired');
        const extra = data('auth-extra-groups').split(',').map((g) => g.trim()).filter((g) => g.startsWith('system:bootstrappers:'));
        return bootstrapUser(bt.id, extra);
      }
    }
    throw new UnauthenticatedError('Unauthorized: invalid bearer token');
  }
}
