// The ImageService through real gRPC on a unix socket: import streamed in chunks, pull from a real
// registry with progress frames, list/status/remove, ImageFsInfo, and bad input answered with the
// right status codes and nothing left registered.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { runtime } from '@berth/api';
import { callUnary, createClient, serve, type RunningServer } from '@berth/common';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { imageService, openImageStore } from './service';
import { startRegistry, skopeoPush, type TestRegistry } from './registry-testing';
import { buildTestImage, makeTar } from './testing';
import { ImageStore } from './image-store';

let fixtures: string;
let layout: string;
let dockerArchive: string;
beforeAll(() => {
  fixtures = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-imgsvc-fixtures-'));
  layout = path.join(fixtures, 'layout');
  dockerArchive = path.join(fixtures, 'docker.tar');
  buildTestImage(layout, { tag: 'v1', dockerArchive });
});
afterAll(() => fs.rmSync(fixtures, { recursive: true, force: true }));

let dir: string;
let server: RunningServer;
let client: runtime.ImageServiceClient;
let store: ImageStore;
let reg: TestRegistry | undefined;
beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-imgsvc-'));
  store = openImageStore(path.join(dir, 'state'));
  server = await serve({ listen: `unix://${path.join(dir, 'images.sock')}`, services: [{ definition: runtime.ImageServiceService, implementation: imageService({ store }) }] });
  server.setServing(true);
  client = createClient(runtime.ImageServiceClient, { target: server.address });
});
afterEach(async () => {
  client.close();
  await server.shutdown(1000);
  await reg?.stop();
  reg = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

function importFile(file: string, meta: Partial<runtime.ImportImageMetadata>, chunk = 1 << 20): Promise<runtime.ImportImageResponse> {
  return new Promise((resolve, reject) => {
    const call = client.importImage((err, res) => (err ? reject(err) : resolve(res)));
    call.write({ metadata: runtime.ImportImageMetadata.fromPartial(meta) });
    const data = fs.readFileSync(file);
    for (let i = 0; i < data.length; i += chunk) call.write({ chunk: data.subarray(i, i + chunk) });
    call.end();
  });
}

function pull(req: Partial<runtime.PullImageRequest>): Promise<runtime.PullImageProgress[]> {
  return new Promise((resolve, reject) => {
    const frames: runtime.PullImageProgress[] = [];
    const s = client.pullImage(runtime.PullImageRequest.fromPartial(req));
    s.on('data', (f: runtime.PullImageProgress) => frames.push(f));
    s.on('error', reject);
    s.on('end', () => resolve(frames));
  });
}

describe('ImageService over gRPC', () => {
  it('imports a streamed docker archive, lists, shows status, reports fs use and removes', async () => {
    const res = await importFile(dockerArchive, { format: 'docker-archive' }, 300_000);
    expect(res.images).toHaveLength(1);
    const img = res.images[0];
    expect(img.repoTags).toEqual(['berth.test/busybox:v1']);
    expect(img.id).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(img.size).toBeGreaterThan(1_000_000);
    const list = await callUnary(client.listImages.bind(client), runtime.ListImagesRequest.fromPartial({}));
    expect(list.images.map((i) => i.id)).toEqual([img.id]);
    const filtered = await callUnary(client.listImages.bind(client), runtime.ListImagesRequest.fromPartial({ filter: { image: { image: 'berth.test/nothing' } } }));
    expect(filtered.images).toEqual([]);
    const st = await callUnary(client.imageStatus.bind(client), runtime.ImageStatusRequest.fromPartial({ image: { image: 'berth.test/busybox:v1' }, verbose: true }));
    expect(st.image?.id).toBe(img.id);
    expect(JSON.parse(st.info.config).rootfs.diff_ids).toHaveLength(3);
    const fsInfo = await callUnary(client.imageFsInfo.bind(client), runtime.ImageFsInfoRequest.fromPartial({}));
    expect(fsInfo.imageFilesystems[0].usedBytes).toBeGreaterThan(img.size);
    expect(fsInfo.imageFilesystems[0].inodesUsed).toBeGreaterThan(20);
    await callUnary(client.removeImage.bind(client), runtime.RemoveImageRequest.fromPartial({ image: { image: img.id } }));
    await callUnary(client.removeImage.bind(client), runtime.RemoveImageRequest.fromPartial({ image: { image: img.id } }));
    const gone = await callUnary(client.imageStatus.bind(client), runtime.ImageStatusRequest.fromPartial({ image: { image: img.id } }));
    expect(gone.image).toBeUndefined();
    const after = await callUnary(client.imageFsInfo.bind(client), runtime.ImageFsInfoRequest.fromPartial({}));
    expect(after.imageFilesystems[0].usedBytes).toBe(0);
  });

  it('imports an OCI archive with a name for its untagged image', async () => {
    const tar = path.join(dir, 'oci.tar');
    execFileSync('tar', ['-C', layout, '-cf', tar, '.']);
    const res = await importFile(tar, { name: 'berth.test/named' });
    expect(res.images[0].repoTags).toEqual(['berth.test/named:v1']);
  });

  it('pulls from a registry, streaming progress and ending with one done frame', async () => {
    reg = await startRegistry();
    await skopeoPush(layout, 'v1', reg, 'berth/busybox:v1');
    const frames = await pull({ image: { image: `${reg.host}/berth/busybox:v1` } });
    const done = frames.filter((f) => f.done);
    expect(done).toHaveLength(1);
    expect(frames[frames.length - 1].done).toBeDefined();
    expect(done[0].done!.imageRef).toMatch(new RegExp(`^${reg.host}/berth/busybox@sha256:`));
    expect(frames.some((f) => f.progress?.status === 'downloading')).toBe(true);
    expect(frames.some((f) => f.progress?.status === 'extracting')).toBe(true);
    const st = await callUnary(client.imageStatus.bind(client), runtime.ImageStatusRequest.fromPartial({ image: { image: `${reg.host}/berth/busybox:v1` } }));
    expect(st.image?.id).toBe(done[0].done!.imageId);
    expect(st.image?.repoDigests).toEqual([done[0].done!.imageRef]);
  });

  it('a cancelled pull registers nothing and the next pull completes', async () => {
    reg = await startRegistry();
    await skopeoPush(layout, 'v1', reg, 'berth/busybox:v1');
    // Blobs come through a proxy that holds them for a second: the pull cannot finish before the cancel lands.
    const registryHost = reg.host;
    const slow = http.createServer((req, res) => {
      setTimeout(() => {
        const up = http.request({ host: '127.0.0.1', port: Number(registryHost.split(':')[1]), path: req.url, method: req.method, headers: { ...req.headers, host: registryHost } }, (ur) => { res.writeHead(ur.statusCode ?? 500, ur.headers); ur.pipe(res); });
        up.on('error', () => res.destroy());
        req.pipe(up);
      }, /\/blobs\//.test(req.url ?? '') ? 1000 : 0);
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const ref = `127.0.0.1:${(slow.address() as net.AddressInfo).port}/berth/busybox:v1`;
    try {
      const cancelled = await new Promise<string>((resolve) => {
        const s = client.pullImage(runtime.PullImageRequest.fromPartial({ image: { image: ref } }));
        s.once('data', () => s.cancel());
        s.on('error', (e: { code: number }) => resolve(e.code === status.CANCELLED ? 'cancelled' : `error ${e.code}`));
        s.on('end', () => resolve('finished'));
      });
      expect(cancelled).toBe('cancelled');
      // Longer than the blobs are held: had the cancel not stopped the pull, it would be registered by now.
      await new Promise((r) => setTimeout(r, 1800));
      expect((await callUnary(client.listImages.bind(client), runtime.ListImagesRequest.fromPartial({}))).images).toEqual([]);
      const frames = await pull({ image: { image: ref } });
      expect(frames[frames.length - 1].done?.imageRef).toContain(ref.split('/')[0]);
    } finally {
      slow.closeAllConnections();
      await new Promise((r) => slow.close(r));
    }
  });

  it('answers bad input with INVALID_ARGUMENT / NOT_FOUND and registers nothing', async () => {
    await expect(pull({ image: { image: '' } })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('image.image') });
    await expect(pull({ image: { image: 'Bad Name!' } })).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    reg = await startRegistry();
    await expect(pull({ image: { image: `${reg.host}/berth/absent:v1` } })).rejects.toMatchObject({ code: status.NOT_FOUND });
    const noMeta = new Promise((resolve, reject) => {
      const call = client.importImage((err, res) => (err ? reject(err) : resolve(res)));
      call.write({ chunk: Buffer.from('x') });
      call.end();
    });
    await expect(noMeta).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('metadata') });
    // A docker archive whose layer tries to escape.
    const evil = path.join(dir, 'evil');
    fs.mkdirSync(evil);
    const config = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] as string[] } };
    const layer = makeTar([{ name: '../../escaped', data: 'x' }]);
    const { createHash } = await import('node:crypto');
    config.rootfs.diff_ids.push(`sha256:${createHash('sha256').update(layer).digest('hex')}`);
    fs.writeFileSync(path.join(evil, 'layer.tar'), layer);
    fs.writeFileSync(path.join(evil, 'config.json'), JSON.stringify(config));
    fs.writeFileSync(path.join(evil, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: ['evil:1'], Layers: ['layer.tar'] }]));
    execFileSync('tar', ['-C', evil, '-cf', path.join(dir, 'evil.tar'), '.']);
    await expect(importFile(path.join(dir, 'evil.tar'), {})).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('path contains ".."') });
    expect((await callUnary(client.listImages.bind(client), runtime.ListImagesRequest.fromPartial({}))).images).toEqual([]);
    expect(fs.readdirSync(path.join(store.root, 'snapshots'))).toEqual([]);
    expect(fs.readdirSync(path.join(store.root, 'blobs', 'sha256'))).toEqual([]);
    expect(fs.existsSync(path.join(store.root, 'escaped')) || fs.existsSync(path.join(dir, 'state', 'escaped'))).toBe(false);
  });
});

