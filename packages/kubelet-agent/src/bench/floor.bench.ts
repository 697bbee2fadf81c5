// `npm run bench -- floor [--pods N]`: what the kernel alone needs to start N pods at once on this
// machine, next to the pods bench's target (p99 <= 100 ms to Running for 100 pods, so all 100
// Running within 100 ms). kernel-floor.c starts N minimal containers — new mount, pid, ipc, uts and
// net namespaces, cgroups in three v1 hierarchies, a bind-mounted busybox rootfs with proc,
// pivot_root, execve — with 1 and with one worker per core, and reports the wall time for all N
// and the machine's CPU (all cores, from /proc/stat, idle background subtracted). A pod needs all
// of that and more (a sandbox and a container, a veth pair with addresses and routes, /dev,
// masked paths, the runtime's and the agent's own work), so this is a lower bound no node agent
// can go under here. The C program is compiled for the run with the system's cc.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { intArg } from './args';

interface Floor { containers: number; workers: number; wallMs: number; machineCpuMs: number; failed: number }


function busyTicks(): number {
  const v = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return v[0]! + v[1]! + v[2]! + v[5]! + v[6]! + v[7]!;
}

async function main(): Promise<void> {
  const pods = intArg('pods', 100);
  const rounds = intArg('rounds', 3);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-floor-'));
  const cg = path.basename(dir);
  const hierarchies = ['cpu', 'memory', 'pids'].map((c) => path.join('/sys/fs/cgroup', c, cg));
  try {
    const src = path.resolve(__dirname, '..', '..', 'src', 'bench', 'kernel-floor.c');
    const bin = path.join(dir, 'kernel-floor');
    execFileSync('cc', ['-O2', '-o', bin, src], { stdio: 'inherit' });
    const rootfs = path.join(dir, 'rootfs');
    fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
    fs.mkdirSync(path.join(rootfs, 'proc'));
    fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
    fs.chmodSync(path.join(rootfs, 'bin', 'busybox'), 0o755);
    fs.symlinkSync('busybox', path.join(rootfs, 'bin', 'true'));
    for (const h of hierarchies) fs.mkdirSync(h);

    // What the machine spends with nothing of ours running, per second: subtracted below.
    const i0 = busyTicks();
    await new Promise((r) => setTimeout(r, 2000));
    const idlePerSec = (busyTicks() - i0) * 10 / 2; // ms of CPU per second (USER_HZ 100)
    const workers = [1, os.cpus().length];
    console.log(`kernel floor: ${pods} minimal containers, ${rounds} rounds, workers ${workers.join(' and ')} (${os.cpus().length} cpus, load ${os.loadavg()[0]!.toFixed(1)}, background ${idlePerSec.toFixed(0)} ms CPU/s)`);
    const results: Array<Floor & { round: number; cpuPerContainerMs: number }> = [];
    for (let r = 0; r < rounds; r++) {
      for (const w of workers) {
        const t0 = Date.now();
        const out = execFileSync(bin, [rootfs, cg, String(pods), String(w)], { encoding: 'utf8' });
        const f = JSON.parse(out) as Floor;
        if (f.failed) throw new Error(`kernel-floor failed: ${out}`);
        const cpu = f.machineCpuMs - idlePerSec * (Date.now() - t0) / 1000;
        results.push({ ...f, round: r, cpuPerContainerMs: +(cpu / pods).toFixed(2) });
      }
    }
    const med = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
    const rows = workers.map((w) => {
      const rs = results.filter((x) => x.workers === w);
      return { workers: w, [`wall for ${pods} ms (median)`]: +med(rs.map((x) => x.wallMs)).toFixed(1), 'machine CPU per container ms': med(rs.map((x) => x.cpuPerContainerMs)), 'wall per container ms': +(med(rs.map((x) => x.wallMs)) / pods).toFixed(2) };
    });
    console.table(rows);
    const best = Math.min(...rows.map((r) => r[`wall for ${pods} ms (median)`] as number));
    console.log(`the pods bench's target: ${pods} pods Running within 100 ms (p99); the kernel alone needs ${best.toFixed(0)} ms for ${pods} stripped-down containers here (${(best / 100).toFixed(1)}x the whole budget)`);
    const outDir = process.env['BERTH_BENCH_RESULTS'];
    if (outDir) {
      fs.mkdirSync(outDir, { recursive: true });
      const file = path.join(outDir, 'floor.json');
      fs.writeFileSync(file, JSON.stringify({ bench: 'floor', date: new Date().toISOString(), pods, cpus: os.cpus().length, kernel: os.release(), backgroundCpuMsPerSec: idlePerSec, rows, results }, null, 2));
      console.log(`wrote ${file}`);
    }
  } finally {
    for (const h of hierarchies) {
      // Children first (left only if a run failed half-way), then the run's own directory.
      try { for (const d of fs.readdirSync(h, { withFileTypes: true })) if (d.isDirectory()) fs.rmdirSync(path.join(h, d.name)); } catch { /* never made */ }
      try { fs.rmdirSync(h); } catch { /* never made */ }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
