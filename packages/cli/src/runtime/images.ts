// `berth runtime images|pull|import|rmi`: crictl-like image commands against a runtime-shim
// socket, for debugging a node without the rest of the cluster.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { runtime } from '@berth/api';
import { callUnary } from '@berth/common';
import { ProgressBars } from './progress';
import { RuntimeUsageError, noMoreFlags, table, takeFlag, takeValue, type RuntimeIo } from './options';

function splitRef(tag: string): [string, string] {
  const at = tag.lastIndexOf(':');
  const slash = tag.lastIndexOf('/');
  return at > slash ? [tag.slice(0, at), tag.slice(at + 1)] : [tag, '<none>'];
}

function size(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}MB`;
  return `${(n / 1e3).toFixed(1)}kB`;
}

export async function images(client: runtime.ImageServiceClient, io: RuntimeIo, args: string[]): Promise<number> {
  const quiet = takeFlag(args, '-q') || takeFlag(args, '--quiet');
  const digests = takeFlag(args, '--digests');
  const output = takeValue(args, '-o', 'images') ?? takeValue(args, '--output', 'images') ?? 'table';
  noMoreFlags(args, 'images');
  if (!['table', 'json'].includes(output)) throw new RuntimeUsageError('images', `-o: expected table or json, got "${output}"`);
  if (args.length > 1) throw new RuntimeUsageError('images', 'takes at most one IMAGE filter');
  const res = await callUnary<runtime.ListImagesRequest, runtime.ListImagesResponse>(client.listImages.bind(client), runtime.ListImagesRequest.fromPartial(args[0] ? { filter: { image: { image: args[0] } } } : {}));
  if (output === 'json') { io.stdout(`${JSON.stringify({ images: res.images }, null, 2)}\n`); return 0; }
  if (quiet) { for (const i of res.images) io.stdout(`${i.id}\n`); return 0; }
  const rows = [['IMAGE', 'TAG', ...(digests ? ['DIGEST'] : []), 'IMAGE ID', 'SIZE']];
  for (const i of res.images) {
    const digest = i.repoDigests[0]?.split('@')[1]?.slice(7, 19) ?? '<none>';
    const tags = i.repoTags.length ? i.repoTags : i.repoDigests.length ? [`${i.repoDigests[0].split('@')[0]}:<none>`] : ['<none>:<none>'];
    for (const t of tags) {
      const [name, tag] = splitRef(t);
      rows.push([name, tag, ...(digests ? [digest] : []), i.id.slice(7, 19), size(i.size)]);
    }
  }
  io.stdout(table(rows));
  return 0;
}

export async function pull(client: runtime.ImageServiceClient, io: RuntimeIo, args: string[]): Promise<number> {
  const insecure = takeFlag(args, '--insecure');
  const creds = takeValue(args, '--creds', 'pull');
  const auth = takeValue(args, '--auth', 'pull');
  const platform = takeValue(args, '--platform', 'pull');
  noMoreFlags(args, 'pull');
  if (args.length !== 1) throw new RuntimeUsageError('pull', 'expected exactly one IMAGE');
  let authConfig: Partial<runtime.AuthConfig> | undefined;
  if (creds) {
    const i = creds.indexOf(':');
    if (i <= 0) throw new RuntimeUsageError('pull', '--creds: expected USER:PASSWORD');
    authConfig = { username: creds.slice(0, i), password: creds.slice(i + 1) };
  } else if (auth) authConfig = { auth };
  const req = runtime.PullImageRequest.fromPartial({ image: { image: args[0], annotations: platform ? { 'berth.io/platform': platform } : {} }, auth: authConfig, insecure });
  const bars = new ProgressBars(io.stderr, io.tty);
  const done = await new Promise<runtime.PullDone | undefined>((resolve, reject) => {
    let last: runtime.PullDone | undefined;
    const s = client.pullImage(req);
    s.on('data', (f: runtime.PullImageProgress) => {
      if (f.progress) bars.update({ id: f.progress.digest, current: f.progress.current, total: f.progress.total, status: f.progress.status });
      if (f.done) last = f.done;
    });
    s.on('error', (e: ServiceError) => reject(e));
    s.on('end', () => resolve(last));
  });
  bars.finish();
  if (!done) { io.stderr('error: the pull ended without a result\n'); return 1; }
  io.stdout(`Image is up to date for ${done.imageId}\n`);
  return 0;
}

export async function importImage(client: runtime.ImageServiceClient, io: RuntimeIo, args: string[]): Promise<number> {
  const format = takeValue(args, '--format', 'import') ?? '';
  const name = takeValue(args, '--name', 'import') ?? '';
  noMoreFlags(args, 'import');
  if (args.length !== 1) throw new RuntimeUsageError('import', 'expected exactly one FILE (a docker-archive or OCI archive tarball; - for stdin)');
  const file = args[0];
  let total = 0;
  let dir = false;
  if (file !== '-') {
    let st: fs.Stats;
    try { st = fs.statSync(file); } catch { throw new RuntimeUsageError('import', `${file}: no such file`); }
    dir = st.isDirectory();
    if (!dir && !st.isFile()) throw new RuntimeUsageError('import', `${file}: not a file or directory`);
    if (dir && !fs.existsSync(path.join(file, 'index.json')) && !fs.existsSync(path.join(file, 'manifest.json'))) {
      throw new RuntimeUsageError('import', `${file}: neither an OCI image layout (index.json) nor an unpacked docker archive (manifest.json)`);
    }
    total = dir ? 0 : st.size;
  }
  const bars = new ProgressBars(io.stderr, io.tty);
  const res = await new Promise<runtime.ImportImageResponse>((resolve, reject) => {
    const call = client.importImage((err, r) => (err ? reject(err) : resolve(r)));
    call.write({ metadata: runtime.ImportImageMetadata.fromPartial({ format, name }) });
    // A directory (an OCI layout) is sent as the tar the service reads, made by tar(1) on the fly.
    const tar = dir ? spawn('tar', ['-C', file, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'] }) : undefined;
    if (tar) {
      let err = '';
      tar.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      tar.on('close', (code) => { if (code !== 0) { call.cancel(); reject(new Error(`tar of ${file} failed: ${err.trim()}`)); } });
    }
    const src = tar ? tar.stdout! : file === '-' ? io.stdinStream() : fs.createReadStream(file, { highWaterMark: 1024 * 1024 });
    let sent = 0;
    src.on('data', (c: string | Buffer) => {
      const b = Buffer.isBuffer(c) ? c : Buffer.from(c);
      sent += b.length;
      bars.update({ id: file === '-' ? 'stdin' : file.split('/').pop()!, current: sent, total, status: 'uploading' });
      if (!call.write({ chunk: b })) { src.pause(); call.once('drain', () => src.resume()); }
    });
    src.on('error', (e: Error) => { call.cancel(); reject(e); });
    src.on('end', () => call.end());
  });
  bars.finish();
  for (const i of res.images) for (const t of i.repoTags.length ? i.repoTags : [i.id]) io.stdout(`Loaded image: ${t} (${i.id})\n`);
  return 0;
}

export async function rmi(client: runtime.ImageServiceClient, io: RuntimeIo, args: string[]): Promise<number> {
  noMoreFlags(args, 'rmi');
  if (!args.length) throw new RuntimeUsageError('rmi', 'expected one or more IMAGEs');
  let rc = 0;
  for (const a of args) {
    const st = await callUnary<runtime.ImageStatusRequest, runtime.ImageStatusResponse>(client.imageStatus.bind(client), runtime.ImageStatusRequest.fromPartial({ image: { image: a } }));
    if (!st.image) { io.stderr(`error: no such image: ${a}\n`); rc = 1; continue; }
    await callUnary<runtime.RemoveImageRequest, runtime.RemoveImageResponse>(client.removeImage.bind(client), runtime.RemoveImageRequest.fromPartial({ image: { image: st.image.id } }));
    io.stdout(`Deleted: ${st.image.repoTags[0] ?? st.image.id}\n`);
  }
  return rc;
}
