// EtcdV2Client over mutual TLS and with v2 auth (basic auth, users, roles, guest access
// revoked, 110 for the unauthenticated).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTestPki, type EtcdCluster, type TestPki } from '@berth/common';
import { EtcdClusterUnavailableError, EtcdError, EtcdV2Client } from '..';
import { startEtcd, uniquePrefix } from '../v3/fixture';

let etcd: EtcdCluster;
let pki: TestPki;
let pkiRoot: string;
beforeAll(async () => {
  pkiRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-etcd-v2pki-'));
  pki = makeTestPki(path.join(pkiRoot, 'pki'));
  etcd = await startEtcd({ clientTls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.ca, clientCertAuth: true, clientCertFile: pki.clientCert, clientKeyFile: pki.clientKey } });
});
afterAll(async () => {
  await etcd?.destroy();
  fs.rmSync(pkiRoot, { recursive: true, force: true });
});
const tls = () => ({ ca: pki.ca, cert: pki.clientCert, key: pki.clientKey });

describe('EtcdV2Client TLS and auth', () => {
  it('works over mTLS and fails without a client certificate', async () => {
    const c = new EtcdV2Client({ endpoints: etcd.endpoints, tls: tls() });
    const bare = new EtcdV2Client({ endpoints: etcd.endpoints, tls: { ca: pki.ca } });
    try {
      const k = `${uniquePrefix('tls')}/k`;
      await c.set(k, 'v');
      expect((await c.get(k)).node.value).toBe('v');
      await expect(bare.get(k)).rejects.toBeInstanceOf(EtcdClusterUnavailableError);
      expect(() => new EtcdV2Client({ endpoints: ['http://127.0.0.1:1'], tls: tls() })).toThrow(/tls: is set but no endpoint is https/);
    } finally {
      c.close();
      bare.close();
    }
  });

  it('v2 auth: root, users, roles, guest revoked, 110 unauthorized', async () => {
    const p = uniquePrefix('auth');
    const anon = new EtcdV2Client({ endpoints: etcd.endpoints, tls: tls() });
    const root = new EtcdV2Client({ endpoints: etcd.endpoints, tls: tls(), auth: { username: 'root', password: 'rootpw' } });
    const alice = new EtcdV2Client({ endpoints: etcd.endpoints, tls: tls(), auth: { username: 'alice', password: 'alicepw' } });
    try {
      await anon.addUser('root', 'rootpw');
      await anon.addRole('app');
      await anon.grantRoleKV('app', { read: [`${p}/*`], write: [`${p}/*`] });
      await anon.addUser('alice', 'alicepw');
      await anon.grantUser('alice', ['app']);
      expect(await anon.listUsers()).toEqual(expect.arrayContaining(['root', 'alice']));
      expect((await anon.getUser('alice')).roles).toEqual(['app']);
      expect((await anon.getRole('app')).permissions.kv.read).toEqual([`${p}/*`]);
      await anon.enableAuth();
      expect(await root.authEnabled()).toBe(true);
      // Guest keeps full access by default in v2: take it away.
      await root.revokeRoleKV('guest', { read: ['/*'], write: ['/*'] });
      await alice.set(`${p}/x`, 'mine');
      expect((await alice.get(`${p}/x`)).node.value).toBe('mine');
      const denied = await anon.get(`${p}/x`).catch((e: unknown) => e);
      expect(denied).toBeInstanceOf(EtcdError);
      expect((denied as EtcdError).errorCode).toBe(110);
      expect(((await alice.set('/elsewhere', 'x').catch((e: unknown) => e)) as EtcdError).errorCode).toBe(110);
      const wrong = new EtcdV2Client({ endpoints: etcd.endpoints, tls: tls(), auth: { username: 'alice', password: 'bad' } });
      try {
        expect(((await wrong.get(`${p}/x`).catch((e: unknown) => e)) as EtcdError).errorCode).toBe(110);
      } finally {
        wrong.close();
      }
    } finally {
      await root.grantRoleKV('guest', { read: ['/*'], write: ['/*'] }).catch(() => undefined);
      await root.removeUser('alice').catch(() => undefined);
      await root.removeRole('app').catch(() => undefined);
      await root.disableAuth().catch(() => undefined);
      anon.close();
      root.close();
      alice.close();
    }
  });
});
