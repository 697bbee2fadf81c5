// Client-certificate authentication of Store calls: the verification result is remembered per
// certificate (by its exact bytes), but expiry is still checked on every call and a certificate from
// another CA is refused every time. Real certificates made by openssl; the call is a plain object
// shaped like a grpc-js call (pure logic beside the mTLS tests of the Store, which use it for real).
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeTestPki } from '@berth/common';
import { Authenticator, type CallIdentity } from './authn';
import type { Registry } from './registry';

const dirs: string[] = [];
afterEach(() => {
  vi.useRealTimers();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function pki(cn: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-authn-test-'));
  dirs.push(dir);
  return makeTestPki(dir, cn, 'team-a');
}

function callWith(certFile: string): CallIdentity {
  const x = new crypto.X509Certificate(fs.readFileSync(certFile));
  const cn = /CN=([^\n]+)/.exec(x.subject)![1]!;
  const peer = { raw: x.raw, subject: { CN: cn, O: 'team-a' }, fingerprint256: x.fingerprint256 };
  return { metadata: new Metadata(), getAuthContext: () => ({ transportSecurityType: 'ssl', sslPeerCertificate: peer }) as never, getPeer: () => '127.0.0.1:1' };
}

/** An authenticator of the cluster CA that has accepted alice's certificate, and another CA's. */
async function twoCas() {
  const cluster = pki('alice');
  const other = pki('mallory');
  const a = new Authenticator(undefined as unknown as Registry, { clientCaFile: cluster.ca });
  const good = callWith(cluster.clientCert);
  await a.authenticate(good, false);
  return { a, good, other };
}

describe('Authenticator (client certificates)', () => {
  it('accepts a certificate of the cluster CA, again and again, and refuses it once it has expired', async () => {
    const p = pki('alice');
    const a = new Authenticator(undefined as unknown as Registry, { clientCaFile: p.ca });
    const call = callWith(p.clientCert);
    for (let i = 0; i < 3; i++) expect(await a.authenticate(call, false)).toMatchObject({ name: 'alice', groups: expect.arrayContaining(['team-a']) });
    const notAfter = Date.parse(new crypto.X509Certificate(fs.readFileSync(p.clientCert)).validTo);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(notAfter + 1000);
    await expect(a.authenticate(call, false)).rejects.toThrow(/expired or is not yet valid/);
  });

  it('refuses a certificate of another CA on every call', async () => {
    const { a, other } = await twoCas();
    const bad = callWith(other.clientCert);
    for (let i = 0; i < 2; i++) await expect(a.authenticate(bad, false)).rejects.toThrow(/signed by unknown authority/);
  });

  it('trusts no reported fingerprint: only the exact certificate bytes verified before count', async () => {
    const { a, good, other } = await twoCas();
    // A foreign certificate reported with the good one's fingerprint: verified on its own, refused.
    const forged = callWith(other.clientCert);
    const peer = (forged.getAuthContext() as unknown as { sslPeerCertificate: { fingerprint256: string } }).sslPeerCertificate;
    const goodFp = (good.getAuthContext() as unknown as { sslPeerCertificate: { fingerprint256: string } }).sslPeerCertificate.fingerprint256;
    const forgedCall: CallIdentity = { ...forged, getAuthContext: () => ({ sslPeerCertificate: { ...peer, fingerprint256: goodFp } }) as never };
    await expect(a.authenticate(forgedCall, false)).rejects.toThrow(/signed by unknown authority/);
  });
});
