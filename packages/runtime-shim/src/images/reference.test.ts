// Reference parsing and platform matching: pure logic, as tables.
import { describe, expect, it } from 'vitest';
import { formatReference, isLoopbackRegistry, parseReference } from './reference';
import { MT, parseManifestOrIndex, platformMatches, selectManifest, type Platform } from './manifest';
import { sha256 } from './digest';

const D = sha256('x');

describe('parseReference', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/foo/bar:v1', 'docker.io/foo/bar:v1'],
    ['quay.io/org/app', 'quay.io/org/app:latest'],
    ['localhost/app:v2', 'localhost/app:v2'],
    ['127.0.0.1:5000/a/b/c:v1', '127.0.0.1:5000/a/b/c:v1'],
    ['[::1]:5000/app', '[::1]:5000/app:latest'],
    [`app@${D}`, `docker.io/library/app@${D}`],
    [`127.0.0.1:5000/app:v1@${D}`, '127.0.0.1:5000/app:v1'],
  ])('%s -> %s', (input, want) => {
    expect(formatReference(parseReference(input))).toBe(want);
  });

  it.each([
    ['', /empty/],
    ['Busybox', /invalid repository name component "Busybox"/],
    ['busybox:', /invalid tag ""/],
    ['app@sha256:abc', /invalid digest/],
    ['a//b', /invalid repository name component ""/],
    ['app:t@g', /invalid digest/],
    ['bad_host:5000x/app', /invalid registry host/],
  ])('rejects %j', (input, err) => {
    expect(() => parseReference(input, 'image.image')).toThrow(err);
  });

  it.each([['127.0.0.1:5000', true], ['127.9.9.9', true], ['localhost:80', true], ['[::1]:5000', true], ['10.0.0.1:5000', false], ['docker.io', false]])('loopback %s = %s', (h, want) => {
    expect(isLoopbackRegistry(h)).toBe(want);
  });
});

describe('platform selection', () => {
  const amd64: Platform = { os: 'linux', architecture: 'amd64' };
  it.each<[string, Platform, Platform, boolean]>([
    ['same', amd64, amd64, true],
    ['other arch', amd64, { os: 'linux', architecture: 'arm64' }, false],
    ['other os', amd64, { os: 'windows', architecture: 'amd64' }, false],
    ['arm64 without variant runs as v8', { os: 'linux', architecture: 'arm64', variant: 'v8' }, { os: 'linux', architecture: 'arm64' }, true],
    ['arm v7 runs v6', { os: 'linux', architecture: 'arm', variant: 'v7' }, { os: 'linux', architecture: 'arm', variant: 'v6' }, true],
    ['arm v6 does not run v7', { os: 'linux', architecture: 'arm', variant: 'v6' }, { os: 'linux', architecture: 'arm', variant: 'v7' }, false],
  ])('%s', (_n, want, have, ok) => {
    expect(platformMatches(want, have)).toBe(ok);
  });

  it('prefers the exact variant and names what an index has when nothing fits', () => {
    const d = (p: Platform, n: string) => ({ mediaType: MT.ociManifest, digest: sha256(n), size: 1, platform: p });
    const index = { kind: 'index' as const, mediaType: MT.ociIndex, manifests: [d({ os: 'linux', architecture: 'arm', variant: 'v6' }, 'v6'), d({ os: 'linux', architecture: 'arm', variant: 'v7' }, 'v7'), d({ os: 'unknown', architecture: 'unknown' }, 'att')] };
    expect(selectManifest(index, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest).toBe(sha256('v7'));
    expect(() => selectManifest(index, { os: 'linux', architecture: 'amd64' })).toThrow('no image for platform linux/amd64 (the index has: linux/arm/v6, linux/arm/v7, unknown/unknown)');
  });
});

describe('parseManifestOrIndex', () => {
  it.each([
    ['schema 1', { schemaVersion: 1 }, /schema 1 is not supported/],
    ['no schemaVersion', { layers: [] }, /schemaVersion: expected 2/],
    ['bad digest', { schemaVersion: 2, mediaType: MT.ociManifest, config: { mediaType: MT.ociConfig, digest: 'sha256:zz', size: 1 }, layers: [] }, /config.digest: invalid digest/],
    ['negative size', { schemaVersion: 2, mediaType: MT.ociManifest, config: { mediaType: MT.ociConfig, digest: D, size: -1 }, layers: [] }, /config.size: expected a non-negative integer/],
    ['artifact layer', { schemaVersion: 2, mediaType: MT.ociManifest, config: { mediaType: MT.ociConfig, digest: D, size: 1 }, layers: [{ mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip', digest: D, size: 1 }] }, /unsupported layer media type/],
    ['unknown type', { schemaVersion: 2, mediaType: 'text/plain' }, /unsupported media type "text\/plain"/],
  ])('rejects %s', (_n, doc, err) => {
    expect(() => parseManifestOrIndex(Buffer.from(JSON.stringify(doc)), undefined)).toThrow(err);
  });

  it('takes the media type from the document, else the Content-Type', () => {
    const m = parseManifestOrIndex(Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: MT.dockerConfig, digest: D, size: 1 }, layers: [] })), `${MT.dockerManifest}; charset=utf-8`);
    expect(m.mediaType).toBe(MT.dockerManifest);
    expect(parseManifestOrIndex(Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] })), 'application/json').kind).toBe('index');
  });
});
