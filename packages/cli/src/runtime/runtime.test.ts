// `berth runtime images|pull|import|rmi` against the real berth-runtime-shim process, with a real
// docker-registry on loopback for pull (skopeo pushes the busybox test image into it).
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceBin } from '../services';
import { runRuntime, type RuntimeIo } from './index';
import { ProgressBars, renderLine } from './progress';

const root = path.resolve(__dirname, '..', '..', '..', '..');
let dir: string;
let sock: string;
let svc: ServiceProcess;
let registry: ChildProcess | undefined;
let regHost: string;

async function startLoopbackRegistry(): Promise<void> {
  const port = await new Promise<number>((resolve) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); }); });
  regHost = `127.0.0.1:${port}`;
  fs.writeFileSync(path.join(dir, 'registry.yml'), `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(dir, 'registry')}\nhttp:\n  addr: ${regHost}\n`);
  registry = spawn('docker-registry', ['serve', path.join(dir, 'registry.yml')], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((r) => http.get(`http://${regHost}/v2/`, (res) => { res.resume(); r(res.statusCode === 200); }).on('error', () => r(false)));
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('docker-registry did not start');
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cli-runtime-'));
  sock = `unix://${path.join(dir, 'rs.sock')}`;
  execFileSync(path.join(root, 'tools', 'build-test-image.sh'), ['--out', path.join(dir, 'layout'), '--tag', 'v1', '--docker-archive', path.join(dir, 'img.tar')]);
  svc = startServiceProcess(serviceBin('runtime-shim'), ['--listen', sock, '--state-dir', path.join(dir, 'state'), '--log-level', 'warn']);
  expect(await waitServing(sock), svc.output()).toBe('SERVING');
  await startLoopbackRegistry();
  await new Promise<void>((resolve, reject) => execFile('skopeo', ['--insecure-policy', 'copy', '-q', '--dest-tls-verify=false', `oci:${path.join(dir, 'layout')}:v1`, `docker://${regHost}/cli/busybox:v1`], (e) => (e ? reject(e) : resolve())));
}, 60_000);
afterAll(async () => {
  await svc?.stop();
  if (registry && registry.exitCode === null) { const done = new Promise((r) => registry!.once('exit', r)); registry.kill('SIGTERM'); await done; }
  fs.rmSync(dir, { recursive: true, force: true });
});

async function run(args: string[], stdin?: Buffer): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: RuntimeIo = {
    stdout: (s) => { out += s; }, stderr: (s) => { err += s; }, env: {}, tty: false,
    stdinStream: () => { const p = new PassThrough(); p.end(stdin ?? Buffer.alloc(0)); return p; },
  };
  const code = await runRuntime(['--runtime-endpoint', sock, ...args], io);
  return { code, out, err };
}

describe('berth runtime', () => {
  it('imports a docker archive from a file and an OCI archive from stdin, lists and removes', async () => {
    const imp = await run(['import', path.join(dir, 'img.tar')]);
    expect(imp, imp.err).toMatchObject({ code: 0 });
    expect(imp.out).toMatch(/^Loaded image: berth\.test\/busybox:v1 \(sha256:[a-f0-9]{64}\)$/m);
    expect(imp.err).toContain('uploading');
    const oci = execFileSync('tar', ['-C', path.join(dir, 'layout'), '-cf', '-', '.'], { maxBuffer: 64 << 20 });
    const imp2 = await run(['import', '--name', 'berth.test/fromstdin', '-'], oci);
    expect(imp2.out).toContain('Loaded image: berth.test/fromstdin:v1');
    const fromDir = await run(['import', '--name', 'berth.test/fromdir', path.join(dir, 'layout')]);
    expect(fromDir.out, fromDir.err).toContain('Loaded image: berth.test/fromdir:v1');
    const list = await run(['images']);
    expect(list.code).toBe(0);
    expect(list.out.split('\n')[0]).toMatch(/^IMAGE\s+TAG\s+IMAGE ID\s+SIZE$/);
    expect(list.out).toMatch(/berth\.test\/busybox\s+v1\s+[a-f0-9]{12}\s+[0-9.]+MB/);
    expect(list.out).toMatch(/berth\.test\/fromstdin\s+v1/);
    const q = await run(['images', '-q']);
    expect(q.out.trim().split('\n')).toHaveLength(1); // one image, two names
    const rm = await run(['rmi', 'berth.test/busybox:v1']);
    expect(rm.out).toBe('Deleted: berth.test/busybox:v1\n');
    expect((await run(['images', '-q'])).out).toBe('');
    const missing = await run(['rmi', 'berth.test/busybox:v1']);
    expect(missing).toMatchObject({ code: 1, err: 'error: no such image: berth.test/busybox:v1\n' });
  });

  it('pulls from a loopback registry with per-layer progress', async () => {
    for (const id of (await run(['images', '-q'])).out.split('\n').filter(Boolean)) await run(['rmi', id]);
    const r = await run(['pull', `${regHost}/cli/busybox:v1`]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^Image is up to date for sha256:[a-f0-9]{64}\n$/);
    expect(r.err).toMatch(/[a-f0-9]{12}\s+downloading/);
    expect(r.err).toMatch(/[a-f0-9]{12}\s+extracting/);
    const list = await run(['images', '--digests']);
    expect(list.out).toMatch(new RegExp(`${regHost.replace(/\./g, '\\.')}/cli/busybox\\s+v1\\s+[a-f0-9]{12}`));
    const json = JSON.parse((await run(['images', '-o', 'json', `${regHost}/cli/busybox:v1`])).out);
    expect(json.images[0].repoDigests[0]).toMatch(/@sha256:/);
  });

  it('reports bad usage and server errors clearly', async () => {
    expect(await run(['pull'])).toMatchObject({ code: 2, err: 'error: berth runtime pull: expected exactly one IMAGE\n' });
    expect(await run(['pull', '--creds', 'nopass', 'x'])).toMatchObject({ code: 2, err: expect.stringContaining('--creds: expected USER:PASSWORD') });
    expect(await run(['images', '--bogus'])).toMatchObject({ code: 2, err: expect.stringContaining('unknown flag "--bogus"') });
    expect(await run(['import', path.join(dir, 'nope.tar')])).toMatchObject({ code: 2, err: expect.stringContaining('no such file') });
    expect(await run(['import', os.tmpdir()])).toMatchObject({ code: 2, err: expect.stringContaining('neither an OCI image layout') });
    expect(await run(['pull', `${regHost}/cli/absent:v1`])).toMatchObject({ code: 1, err: expect.stringContaining('not found') });
    expect(await run(['ps', '--state', 'sleepy'])).toMatchObject({ code: 2, err: expect.stringContaining('--state: expected created, running or exited') });
    expect(await run(['logs', 'no-such-container'])).toMatchObject({ code: 2, err: expect.stringContaining('no container "no-such-container"') });
    expect(await run(['frobnicate'])).toMatchObject({ code: 1, err: expect.stringContaining('unknown command "frobnicate"') });
    const down = await runRuntime(['--runtime-endpoint', `unix://${path.join(dir, 'absent.sock')}`, 'images'], { stdout: () => undefined, stderr: (s) => { expect(s).toContain('cannot reach the runtime-shim'); }, env: {}, tty: false, stdinStream: () => new PassThrough() });
    expect(down).toBe(1);
  });

  it('draws progress bars in place on a terminal', () => {
    let screen = '';
    let t = 0;
    const bars = new ProgressBars((s) => { screen += s; }, true, () => (t += 200));
    bars.update({ id: 'sha256:' + 'a'.repeat(64), current: 5e6, total: 10e6, status: 'downloading' });
    bars.update({ id: 'sha256:' + 'b'.repeat(64), current: 0, total: 2e6, status: 'downloading' });
    bars.update({ id: 'sha256:' + 'a'.repeat(64), current: 10e6, total: 10e6, status: 'done' });
    bars.finish();
    expect(screen).toContain('\x1b[2A'); // redrawn over the two lines
    expect(renderLine({ id: 'sha256:' + 'a'.repeat(64), current: 5e6, total: 10e6, status: 'downloading' })).toBe('aaaaaaaaaaaa downloading [===========>            ] 5.0 MB/10.0 MB');
  });
});
