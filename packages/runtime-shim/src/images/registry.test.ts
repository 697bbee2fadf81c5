// PullImage against a real registry on loopback (Debian's docker-registry) into which skopeo
// pushes the busybox test image: by tag and by digest, multi-platform indexes, basic and token
// auth, and a proxy that breaks or corrupts blob downloads (resume, verification).
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore, type Progress } from './image-store';
import { pullImage } from './registry';
import { startRegistry, skopeoPush, type TestRegistry } from './registry-testing';
import { buildTestImage } from './testing';
import { hexOf, sha256 } from './digest';

let fixtures: string;
let layout: string;
beforeAll(() => {
  fixtures = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-pull-fixtures-'));
  layout = path.join(fixtures, 'layout');
  buildTestImage(layout, { tag: 'v1', padMb: 3 });
  addArm64(layout, 'multi');
});
afterAll(() => fs.rmSync(fixtures, { recursive: true, force: true }));

/** Adds tag `tag`: an index holding the amd64 image and an arm64 twin (same layers, arm64 config). */
function addArm64(dir: string, tag: string): void {
  const idx = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8'));
  const amd = idx.manifests[0];
  const blob = (d: string) => path.join(dir, 'blobs/sha256', hexOf(d as `sha256:${string}`));
  const put = (b: Buffer) => { const d = sha256(b); fs.writeFileSync(blob(d), b); return { digest: d, size: b.length }; };
  const manifest = JSON.parse(fs.readFileSync(blob(amd.digest), 'utf8'));
  const config = JSON.parse(fs.readFileSync(blob(manifest.config.digest), 'utf8'));
  const arm = put(Buffer.from(JSON.stringify({ ...manifest, config: { ...manifest.config, ...put(Buffer.from(JSON.stringify({ ...config, architecture: 'arm64', variant: 'v8' }))) } })));
  const index = put(Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: manifest.mediaType, ...arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { mediaType: manifest.mediaType, digest: amd.digest, size: amd.size, platform: { os: 'linux', architecture: 'amd64' } },
    ],
  })));
  idx.manifests.push({ mediaType: 'application/vnd.oci.image.index.v1+json', ...index, annotations: { 'org.opencontainers.image.ref.name': tag } });
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify(idx));
}

let dir: string;
let store: ImageStore;
const registries: TestRegistry[] = [];
const servers: http.Server[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-pull-'));
  store = new ImageStore({ root: path.join(dir, 'images'), platform: { os: 'linux', architecture: 'amd64' } });
});
afterEach(async () => {
  for (const s of servers.splice(0)) { s.closeAllConnections(); await new Promise((r) => s.close(r)); }
  for (const r of registries.splice(0)) await r.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function registry(auth: 'none' | 'basic' | 'token' = 'none'): Promise<TestRegistry> {
  const r = await startRegistry({ auth });
  registries.push(r);
  return r;
}

function snapshots(): string[] {
  return fs.readdirSync(path.join(dir, 'images', 'snapshots'));
}

describe('pullImage from a real registry on loopback', () => {
  it('pulls by tag with progress, again as "exists", and by digest', async () => {
    const reg = await registry();
    await skopeoPush(layout, 'v1', reg, 'berth/busybox:v1');
    const events: Progress[] = [];
    const { image, imageRef } = await pullImage(store, `${reg.host}/berth/busybox:v1`, {}, { onProgress: (p) => events.push(p) });
    expect(image.repoTags).toEqual([`${reg.host}/berth/busybox:v1`]);
    expect(imageRef).toMatch(new RegExp(`^${reg.host}/berth/busybox@sha256:[a-f0-9]{64}$`));
    expect(image.repoDigests).toEqual([imageRef]);
    expect(image.layers).toHaveLength(3);
    for (const l of image.layers) {
      expect(events.some((e) => e.digest === l.digest && e.status === 'downloading')).toBe(true);
      expect(events.some((e) => e.digest === l.digest && e.status === 'extracting')).toBe(true);
    }
    const big = image.layers[2];
    expect(events.filter((e) => e.digest === big.digest && e.status === 'downloading').length).toBeGreaterThan(1);
    expect(fs.readFileSync(path.join(store.snapshots.fsPath(image.chainIds[1]), 'etc/layer2'), 'utf8')).toBe('from layer 2\n');

    const again: Progress[] = [];
    await pullImage(store, `${reg.host}/berth/busybox:v1`, {}, { onProgress: (p) => again.push(p) });
    expect(again.filter((e) => e.status === 'exists').length).toBeGreaterThanOrEqual(4);
    expect(again.some((e) => e.status === 'downloading')).toBe(false);

    const byDigest = await pullImage(store, imageRef, {});
    expect(byDigest.image.id).toBe(image.id);
    await expect(pullImage(store, `${reg.host}/berth/busybox:nope`, {})).rejects.toThrow(/not found/);
    await expect(pullImage(store, `${reg.host}/berth/busybox@${sha256('x')}`, {})).rejects.toThrow(/not found/);
  });

  it('selects linux/amd64 from a multi-platform index, or arm64 when asked', async () => {
    const reg = await registry();
    await skopeoPush(layout, 'multi', reg, 'berth/multi:v1', { all: true });
    const { image, imageRef } = await pullImage(store, `${reg.host}/berth/multi:v1`, {});
    expect(image.platform).toBe('linux/amd64');
    expect(image.indexDigest).toBeDefined();
    expect(imageRef.endsWith(image.indexDigest!)).toBe(true);
    const arm = await pullImage(store, `${reg.host}/berth/multi:v1`, {}, { platform: { os: 'linux', architecture: 'arm64' } });
    expect(arm.image.platform).toBe('linux/arm64/v8');
    expect(arm.image.chainIds).toEqual(image.chainIds); // same layers, shared snapshots
    await expect(pullImage(store, `${reg.host}/berth/multi:v1`, {}, { platform: { os: 'linux', architecture: 's390x' } })).rejects.toThrow(/no image for platform linux\/s390x \(the index has: linux\/arm64\/v8, linux\/amd64\)/);
  });

  it('basic auth: refused without credentials, pulls with them', async () => {
    const reg = await registry('basic');
    await skopeoPush(layout, 'v1', reg, 'private/busybox:v1', { creds: true });
    await expect(pullImage(store, `${reg.host}/private/busybox:v1`, {})).rejects.toThrow(/needs credentials/);
    await expect(pullImage(store, `${reg.host}/private/busybox:v1`, {}, { auth: { username: reg.user, password: 'wrong' } })).rejects.toThrow(/refused the credentials/);
    const auth = Buffer.from(`${reg.user}:${reg.password}`).toString('base64');
    const { image } = await pullImage(store, `${reg.host}/private/busybox:v1`, {}, { auth: { auth } });
    expect(image.layers).toHaveLength(3);
    expect(store.list()).toHaveLength(1);
  });

  it('token auth: gets a bearer token from the realm with the credentials', async () => {
    const reg = await registry('token');
    await skopeoPush(layout, 'v1', reg, 'tok/busybox:v1', { creds: true });
    const before = reg.tokenRequests;
    await expect(pullImage(store, `${reg.host}/tok/busybox:v1`, {}, { auth: { username: reg.user, password: 'wrong' } })).rejects.toThrow(/refused the credentials/);
    const { image } = await pullImage(store, `${reg.host}/tok/busybox:v1`, {}, { auth: { username: reg.user, password: reg.password } });
    expect(image.layers).toHaveLength(3);
    expect(reg.tokenRequests).toBeGreaterThan(before + 1);
    // An identity (refresh) token instead of a password, and a registry token used as it is.
    await store.remove(image.id);
    const viaIdentity = await pullImage(store, `${reg.host}/tok/busybox:v1`, {}, { auth: { identityToken: reg.identityToken } });
    expect(viaIdentity.image.id).toBe(image.id);
    const tok = await new Promise<string>((resolve) => {
      const u = `${reg.realm}?service=berth-test-registry&scope=repository:tok/busybox:pull`;
      http.get(u, { headers: { authorization: `Basic ${Buffer.from(`${reg.user}:${reg.password}`).toString('base64')}` } }, (res) => { let b = ''; res.on('data', (d) => { b += d; }); res.on('end', () => resolve(JSON.parse(b).token)); });
    });
    await store.remove(image.id);
    const viaToken = await pullImage(store, `${reg.host}/tok/busybox:v1`, {}, { auth: { registryToken: tok } });
    expect(viaToken.image.id).toBe(image.id);
  });
});

/** A proxy in front of the registry that can break or corrupt the first response for a big blob. */
async function proxy(target: string, mode: 'cut' | 'corrupt' | 'oversize'): Promise<{ host: string; ranges: string[] }> {
  const ranges: string[] = [];
  let broken = false;
  const server = http.createServer((req, res) => {
    const up = http.request({ host: '127.0.0.1', port: Number(target.split(':')[1]), path: req.url, method: req.method, headers: { ...req.headers, host: target } }, (ur) => {
      const isBlob = /\/blobs\/sha256:/.test(req.url ?? '') && Number(ur.headers['content-length'] ?? 0) > 1024 * 1024;
      if (req.headers.range) ranges.push(req.headers.range);
      if (!isBlob || (broken && mode === 'cut')) { res.writeHead(ur.statusCode ?? 500, ur.headers); ur.pipe(res); return; }
      broken = true;
      const len = Number(ur.headers['content-length']);
      res.writeHead(ur.statusCode ?? 500, mode === 'oversize' ? { ...ur.headers, 'content-length': String(len + 10) } : ur.headers);
      let sent = 0;
      ur.on('data', (c: Buffer) => {
        if (mode === 'cut' && sent + c.length > len / 2) { res.socket?.destroy(); ur.destroy(); return; }
        if (mode === 'corrupt' && sent === 0) { c = Buffer.from(c); c[100] ^= 0xff; }
        sent += c.length;
        res.write(c);
      });
      ur.on('end', () => { if (mode === 'oversize') res.write(Buffer.alloc(10)); res.end(); });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { host: `127.0.0.1:${(server.address() as net.AddressInfo).port}`, ranges };
}

describe('pullImage endpoints', () => {
  it('reaches a loopback registry over HTTPS with a self-signed certificate, and plain HTTP ones too', async () => {
    const reg = await startRegistry({ tls: true });
    registries.push(reg);
    await skopeoPush(layout, 'v1', reg, 'berth/busybox:v1');
    const { image } = await pullImage(store, `${reg.host}/berth/busybox:v1`, {});
    expect(image.layers).toHaveLength(3);
  });

  it('pulls Docker v2 schema 2 manifests and manifest lists', async () => {
    const reg = await registry();
    await skopeoPush(layout, 'v1', reg, 'berth/docker:v1', { format: 'v2s2' });
    const { image } = await pullImage(store, `${reg.host}/berth/docker:v1`, {});
    expect(image.layers.every((l) => l.mediaType === 'application/vnd.docker.image.rootfs.diff.tar.gzip')).toBe(true);
    const m = JSON.parse(store.content.readBuffer(image.manifestDigest).toString());
    expect(m.mediaType).toBe('application/vnd.docker.distribution.manifest.v2+json');
    await skopeoPush(layout, 'multi', reg, 'berth/dockerlist:v1', { format: 'v2s2', all: true });
    const list = await pullImage(store, `${reg.host}/berth/dockerlist:v1`, {});
    expect(JSON.parse(store.content.readBuffer(list.image.indexDigest!).toString()).mediaType).toBe('application/vnd.docker.distribution.manifest.list.v2+json');
    expect(list.image.platform).toBe('linux/amd64');
  });

  it('uses a mirror first, and the registry itself when the mirror is down', async () => {
    const reg = await registry();
    await skopeoPush(layout, 'v1', reg, 'berth/busybox:v1');
    // 127.0.0.2:1 refuses connections: the pull can only succeed through the mirror.
    const viaMirror = await pullImage(store, '127.0.0.2:1/berth/busybox:v1', { mirrors: { '127.0.0.2:1': [`http://${reg.host}`] } });
    expect(viaMirror.image.repoTags).toEqual(['127.0.0.2:1/berth/busybox:v1']);
    const dead = await new Promise<number>((resolve) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); }); });
    const fallback = await pullImage(store, `${reg.host}/berth/busybox:v1`, { mirrors: { [reg.host]: [`http://127.0.0.1:${dead}`] } });
    expect(fallback.image.id).toBe(viaMirror.image.id);
    await expect(pullImage(store, '127.0.0.2:1/berth/busybox:v1', {})).rejects.toThrow(/cannot pull .*ECONNREFUSED/);
    await expect(pullImage(store, 'x/y:z', { mirrors: { 'docker.io': ['not a url'] } })).rejects.toThrow(/mirrors\["docker.io"\]: "not a url" is not a URL/);
  });

  it('follows blob redirects to storage without sending the registry credentials there', async () => {
    const reg = await registry('basic');
    await skopeoPush(layout, 'v1', reg, 'private/busybox:v1', { creds: true });
    const basic = `Basic ${Buffer.from(`${reg.user}:${reg.password}`).toString('base64')}`;
    const seenByStorage: Array<string | undefined> = [];
    const forward = (req: http.IncomingMessage, res: http.ServerResponse, auth: string | undefined): void => {
      const up = http.request({ host: '127.0.0.1', port: Number(reg.host.split(':')[1]), path: req.url, method: req.method, headers: { ...req.headers, host: reg.host, ...(auth ? { authorization: auth } : {}) } }, (ur) => { res.writeHead(ur.statusCode ?? 500, ur.headers); ur.pipe(res); });
      req.pipe(up);
    };
    // "Storage" on another port serves blobs itself (with its own access to the registry).
    const storage = http.createServer((req, res) => { seenByStorage.push(req.headers.authorization); forward(req, res, basic); });
    servers.push(storage);
    await new Promise<void>((r) => storage.listen(0, '127.0.0.1', r));
    const storageHost = `127.0.0.1:${(storage.address() as net.AddressInfo).port}`;
    const front = http.createServer((req, res) => {
      if (/\/blobs\/sha256:/.test(req.url ?? '') && req.headers.authorization) { res.writeHead(307, { location: `http://${storageHost}${req.url}` }); res.end(); return; }
      forward(req, res, undefined);
    });
    servers.push(front);
    await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
    const frontHost = `127.0.0.1:${(front.address() as net.AddressInfo).port}`;
    const { image } = await pullImage(store, `${frontHost}/private/busybox:v1`, {}, { auth: { username: reg.user, password: reg.password } });
    expect(image.layers).toHaveLength(3);
    expect(seenByStorage.length).toBe(4); // config + 3 layers
    expect(seenByStorage.every((a) => a === undefined)).toBe(true);
  });

  it('downloads layers concurrently', async () => {
    const reg = await registry();
    await skopeoPush(layout, 'v1', reg, 'berth/busybox:v1');
    let active = 0;
    let most = 0;
    const server = http.createServer((req, res) => {
      const isBlob = /\/blobs\/sha256:/.test(req.url ?? '');
      if (isBlob) { active++; most = Math.max(most, active); }
      // Holding each blob response briefly makes overlap certain rather than a matter of timing.
      setTimeout(() => {
        const up = http.request({ host: '127.0.0.1', port: Number(reg.host.split(':')[1]), path: req.url, method: req.method, headers: { ...req.headers, host: reg.host } }, (ur) => {
          res.writeHead(ur.statusCode ?? 500, ur.headers);
          ur.pipe(res);
          ur.on('end', () => { if (isBlob) active--; });
        });
        req.pipe(up);
      }, isBlob ? 150 : 0);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    await pullImage(store, `${host}/berth/busybox:v1`, { concurrency: 3 });
    expect(most).toBe(3);
  });
});

describe('pullImage against a registry that misbehaves', () => {
  it('resumes a blob download with Range after the connection breaks', async () => {
    const reg = await registry();
    await skopeoPush(layout, 'v1', reg, 'berth/busybox:v1');
    const p = await proxy(reg.host, 'cut');
    const { image } = await pullImage(store, `${p.host}/berth/busybox:v1`, { retries: 2 });
    expect(p.ranges).toHaveLength(1);
    expect(p.ranges[0]).toMatch(/^bytes=[1-9][0-9]*-$/);
    expect(image.layers).toHaveLength(3);
  });

  it('resumes a download a killed daemon left in the ingest directory', async () => {
    const reg = await registry();
    await skopeoPush(layout, 'v1', reg, 'berth/busybox:v1');
    const idx = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'));
    const manifest = JSON.parse(fs.readFileSync(path.join(layout, 'blobs/sha256', hexOf(idx.manifests[0].digest)), 'utf8'));
    const big = manifest.layers[2];
    const data = fs.readFileSync(path.join(layout, 'blobs/sha256', hexOf(big.digest)));
    fs.writeFileSync(path.join(dir, 'images', 'ingest', `${hexOf(big.digest)}.partial`), data.subarray(0, 100_000));
    const p = await proxy(reg.host, 'cut');
    const reopened = new ImageStore({ root: path.join(dir, 'images'), platform: { os: 'linux', architecture: 'amd64' } });
    await pullImage(reopened, `${p.host}/berth/busybox:v1`, { retries: 2 });
    expect(p.ranges[0]).toBe('bytes=100000-');
  });

  it('rejects corrupted and oversized blobs; nothing is registered or left unpacked', async () => {
    const reg = await registry();
    await skopeoPush(layout, 'v1', reg, 'berth/busybox:v1');
    for (const mode of ['corrupt', 'oversize'] as const) {
      const p = await proxy(reg.host, mode);
      await expect(pullImage(store, `${p.host}/berth/busybox:v1`, {})).rejects.toThrow(mode === 'corrupt' ? /digest mismatch/ : /the registry sends \d+ bytes, the manifest declares/);
      expect(store.list()).toEqual([]);
      expect(snapshots()).toEqual([]);
    }
  });
});
