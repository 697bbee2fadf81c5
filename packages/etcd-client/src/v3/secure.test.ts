// EtcdV3Client against an etcd that requires mutual TLS, then with auth (users, roles,
// permissions, a token that expires every second and is renewed by the client).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki, type EtcdCluster, type TestPki } from '@berth/common';
import { EtcdAuthError, EtcdV3Client, EtcdV3Error } from '..';
import { startEtcd, uniquePrefix } from './fixture';

let etcd: EtcdCluster;
let pki: TestPki;
let otherPki: TestPki;
let pkiRoot: string;
beforeAll(async () => {
  pkiRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-etcd-pki-'));
  pki = makeTestPki(path.join(pkiRoot, 'good'));
  otherPki = makeTestPki(path.join(pkiRoot, 'other'));
  etcd = await startEtcd({
    clientTls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.ca, clientCertAuth: true, clientCertFile: pki.clientCert, clientKeyFile: pki.clientKey },
    extraArgs: ['--auth-token-ttl=1'],
  });
});
afterAll(async () => {
  await etcd?.destroy();
  fs.rmSync(pkiRoot, { recursive: true, force: true });
});

const tls = () => ({ ca: pki.ca, cert: pki.clientCert, key: pki.clientKey });

describe('EtcdV3Client TLS', () => {
  it('talks to an mTLS etcd with CA and client certificate', async () => {
    expect(etcd.endpoints[0]).toMatch(/^https:/);
    const c = new EtcdV3Client({ endpoints: etcd.endpoints, tls: tls() });
    try {
      const k = `${uniquePrefix('tls')}/k`;
      await c.put(k, 'secret');
      expect((await c.get(k))?.value.toString()).toBe('secret');
    } finally {
      c.close();
    }
  });

  it('fails without a client certificate and with an unknown CA', async () => {
    for (const t of [{ ca: pki.ca }, { ca: otherPki.ca, cert: otherPki.clientCert, key: otherPki.clientKey }]) {
      const c = new EtcdV3Client({ endpoints: etcd.endpoints, tls: t, requestTimeoutMs: 1500 });
      try {
        const err = await c.get('/k').then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(EtcdV3Error);
        expect((err as EtcdV3Error).codeName).toMatch(/UNAVAILABLE|DEADLINE_EXCEEDED/);
      } finally {
        c.close();
      }
    }
  });

  it('rejects unreadable TLS files naming the option', () => {
    expect(() => new EtcdV3Client({ endpoints: etcd.endpoints, tls: { ca: '/nonexistent/ca.crt' } })).toThrow(/tls\.ca: cannot read/);
    expect(() => new EtcdV3Client({ endpoints: etcd.endpoints, tls: { ca: pki.ca, cert: pki.clientCert } })).toThrow(/tls: cert and key go together/);
  });
});

describe('EtcdV3Client auth', () => {
  it('authenticates, enforces role permissions and renews an expired token', async () => {
    const admin = new EtcdV3Client({ endpoints: etcd.endpoints, tls: tls() });
    const p = uniquePrefix('app');
    let root: EtcdV3Client | undefined;
    let alice: EtcdV3Client | undefined;
    try {
      await admin.userAdd('root', 'rootpw');
      await admin.roleAdd('root');
      await admin.userGrantRole('root', 'root');
      await admin.userAdd('alice', 'alicepw');
      await admin.roleAdd('app');
      await admin.roleGrantPermission('app', { key: `${p}/`, prefix: true, type: 'readwrite' });
      await admin.userGrantRole('alice', 'app');
      await admin.authEnable();

      alice = new EtcdV3Client({ endpoints: etcd.endpoints, tls: tls(), auth: { username: 'alice', password: 'alicepw' } });
      await alice.put(`${p}/x`, '1');
      expect((await alice.get(`${p}/x`))?.value.toString()).toBe('1');
      const denied = await alice.put('/not-hers', '1').then(() => undefined, (e: unknown) => e);
      expect(denied).toBeInstanceOf(EtcdAuthError);
      expect((denied as Error).message).toMatch(/permission denied/);

      // The token lives one second (--auth-token-ttl=1): the client must renew it by itself.
      expect(alice.conn.authentications).toBe(1);
      await new Promise((r) => setTimeout(r, 2500));
      await alice.put(`${p}/x`, '2');
      expect(alice.conn.authentications).toBe(2);
      expect((await alice.get(`${p}/x`))?.value.toString()).toBe('2');

      const wrong = new EtcdV3Client({ endpoints: etcd.endpoints, tls: tls(), auth: { username: 'alice', password: 'nope' } });
      try {
        const err = await wrong.get(`${p}/x`).then(() => undefined, (e: unknown) => e);
        expect(err).toBeInstanceOf(EtcdV3Error);
        expect((err as Error).message).toMatch(/authentication failed/);
      } finally {
        wrong.close();
      }
    } finally {
      root = new EtcdV3Client({ endpoints: etcd.endpoints, tls: tls(), auth: { username: 'root', password: 'rootpw' } });
      await root.authDisable().catch(() => undefined);
      await root.userDelete('alice').catch(() => undefined);
      await root.roleDelete('app').catch(() => undefined);
      root.close();
      alice?.close();
      admin.close();
    }
  });
});
