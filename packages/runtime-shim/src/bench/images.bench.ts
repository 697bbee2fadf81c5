// `npm run bench -- images [--pad-mb N] [--rounds N]`: Berth's image path against its floors, in
// the same run, on the same image (the busybox test image padded to ~100 MB over three layers):
//   1. unpack of the layers: Berth's secure applyLayer vs `tar -xzf` of the same blobs (and the
//      same for zstd layers, with zstd(1) as Berth's decoder and with fzstd);
//   2. import of the OCI layout (copy + verify into the content store + unpack + register);
//   3. pull from a docker-registry on loopback (download + verify + unpack + register) vs
//      `skopeo copy docker://... dir:...` (download + verify, no unpack).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageStore } from '../images/image-store';
import { importPath } from '../images/import';
import { pullImage } from '../images/registry';
import { startRegistry, skopeoPush } from '../images/registry-testing';
import { buildTestImage } from '../images/testing';
import { applyLayer, WhiteoutMaker } from '../images/unpack';
import { useZstdBinary } from '../images/decompress';
import { hexOf, type Digest } from '../images/digest';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) { console.error(`images bench: --${name}: expected a positive integer`); process.exit(2); }
  return v;
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return +s[Math.floor(s.length / 2)].toFixed(1); };
const now = (): number => Number(process.hrtime.bigint()) / 1e6;

async function main(): Promise<void> {
  const padMb = arg('pad-mb', 96);
  const rounds = arg('rounds', 5);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-images-bench-'));
  const reg = await startRegistry();
  try {
    const layout = path.join(dir, 'layout');
    buildTestImage(layout, { tag: 'bench', padMb });
    const idx = JSON.parse(fs.readFileSync(path.join(layout, 'index.json'), 'utf8'));
    const manifest = JSON.parse(fs.readFileSync(path.join(layout, 'blobs/sha256', hexOf(idx.manifests[0].digest)), 'utf8'));
    const layers: string[] = manifest.layers.map((l: { digest: Digest }) => path.join(layout, 'blobs/sha256', hexOf(l.digest)));
    const compressed = layers.reduce((n, l) => n + fs.statSync(l).size, 0);
    const scratch = path.join(dir, 'scratch');
    const fresh = (): string => { fs.rmSync(scratch, { recursive: true, force: true }); fs.mkdirSync(scratch); return scratch; };
    const results: Record<string, { berthMs: number; peerMs: number; ratio: number; peer: string; berth: string }> = {};
    const record = (name: string, berth: string, b: number[], peer: string, p: number[]): void => {
      results[name] = { berth, peer, berthMs: median(b), peerMs: median(p), ratio: +(median(b) / median(p)).toFixed(2) };
    };

    // 1. unpack only.
    const bUnpack: number[] = [];
    const pUnpack: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let root = fresh();
      fs.mkdirSync(path.join(root, 'wh'));
      const wh = new WhiteoutMaker(path.join(root, 'wh'));
      let t = now();
      for (const [i, l] of layers.entries()) {
        const d = path.join(root, `l${i}`);
        fs.mkdirSync(d);
        await applyLayer(fs.createReadStream(l, { highWaterMark: 256 * 1024 }), d, { whiteouts: wh });
      }
      bUnpack.push(now() - t);
      root = fresh();
      t = now();
      for (const [i, l] of layers.entries()) {
        const d = path.join(root, `l${i}`);
        fs.mkdirSync(d);
        execFileSync('tar', ['-xzf', l, '-C', d]);
      }
      pUnpack.push(now() - t);
    }
    record('unpack', 'applyLayer x3 (verify diff id, checks)', bUnpack, 'tar -xzf x3', pUnpack);

    // 1b. the same layers compressed with zstd (fzstd, pure JS, against zstd(1) through tar).
    const zlayout = path.join(dir, 'zstd');
    buildTestImage(zlayout, { tag: 'bench', padMb, compress: 'zstd' });
    const zidx = JSON.parse(fs.readFileSync(path.join(zlayout, 'index.json'), 'utf8'));
    const zman = JSON.parse(fs.readFileSync(path.join(zlayout, 'blobs/sha256', hexOf(zidx.manifests[0].digest)), 'utf8'));
    const zlayers: string[] = zman.layers.map((l: { digest: Digest }) => path.join(zlayout, 'blobs/sha256', hexOf(l.digest)));
    const bZstd: number[] = [];
    const bFzstd: number[] = [];
    const pZstd: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let root: string;
      let t: number;
      for (const binary of [true, false]) {
        root = fresh();
        fs.mkdirSync(path.join(root, 'wh'));
        const wh = new WhiteoutMaker(path.join(root, 'wh'));
        useZstdBinary(binary);
        t = now();
        for (const [i, l] of zlayers.entries()) {
          const d = path.join(root, `l${i}`);
          fs.mkdirSync(d);
          await applyLayer(fs.createReadStream(l, { highWaterMark: 256 * 1024 }), d, { whiteouts: wh });
        }
        (binary ? bZstd : bFzstd).push(now() - t);
      }
      useZstdBinary(true);
      root = fresh();
      t = now();
      for (const [i, l] of zlayers.entries()) {
        const d = path.join(root, `l${i}`);
        fs.mkdirSync(d);
        execFileSync('tar', ['--zstd', '-xf', l, '-C', d]);
      }
      pZstd.push(now() - t);
    }
    record('unpack-zstd', 'applyLayer x3 (zstd(1) child)', bZstd, 'tar --zstd -xf x3', pZstd);
    record('unpack-fzstd', 'applyLayer x3 (fzstd, no zstd(1))', bFzstd, 'tar --zstd -xf x3', pZstd);

    // 2. import of the layout (no peer does exactly this; the floor is tar -x of the layers).
    const bImport: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const root = fresh();
      const store = new ImageStore({ root: path.join(root, 'images') });
      const t = now();
      await importPath(store, layout, { name: 'bench/image' });
      bImport.push(now() - t);
    }
    record('import', 'importPath(OCI layout): copy+verify+unpack+register', bImport, 'tar -xzf x3', pUnpack);

    // 3. pull from the local registry.
    await skopeoPush(layout, 'bench', reg, 'bench/image:v1');
    const bPull: number[] = [];
    const pPull: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let root = fresh();
      const store = new ImageStore({ root: path.join(root, 'images') });
      let t = now();
      await pullImage(store, `${reg.host}/bench/image:v1`, {});
      bPull.push(now() - t);
      root = fresh();
      t = now();
      execFileSync('skopeo', ['--insecure-policy', 'copy', '-q', '--src-tls-verify=false', `docker://${reg.host}/bench/image:v1`, `dir:${path.join(root, 'out')}`]);
      pPull.push(now() - t);
    }
    record('pull', 'pullImage: download+verify+unpack+register', bPull, 'skopeo copy to dir: (download+verify only)', pPull);
    // The same work on the peer side: skopeo's download plus tar's unpack.
    record('pull+x', 'pullImage: download+verify+unpack+register', bPull, 'skopeo copy + tar -xzf x3 (sum of medians)', [median(pPull) + median(pUnpack)]);

    console.log(`images bench: ${padMb + 2} MB image (${(compressed / 1e6).toFixed(1)} MB compressed, 3 layers), ${rounds} rounds, medians`);
    console.log(`${'case'.padEnd(12)} ${'berth ms'.padStart(9)} ${'peer ms'.padStart(9)} ${'ratio'.padStart(6)}  berth | peer`);
    for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(12)} ${String(v.berthMs).padStart(9)} ${String(v.peerMs).padStart(9)} ${String(v.ratio).padStart(6)}  ${v.berth} | ${v.peer}`);
    const out = process.env.BERTH_BENCH_RESULTS;
    if (out) {
      fs.mkdirSync(out, { recursive: true });
      const file = path.join(out, 'images.json');
      fs.writeFileSync(file, JSON.stringify({ bench: 'images', date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, kernel: os.release(), imageMb: padMb + 2, compressedBytes: compressed, rounds, results }, null, 2) + '\n');
      console.log(`wrote ${file}`);
    }
  } finally {
    await reg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => { console.error(err); process.exit(1); });
