// npm run bench -- runtime [iterations]
// create+start+wait+delete of /bin/true on one busybox bundle: runc run, crun run,
// berth-runtime run (CLI), and the runtime-shim API path on a running daemon, two ways: one
// RunContainer call (remove: true) and the four calls CreateContainer, WaitContainer sent before
// StartContainer, RemoveContainer; each through grpc-js and through common's lean client. All
// interleaved round by round, with an untimed pause after each run; plus `node -e 0` (the CLI's
// floor) and the daemon's peak memory with 100 concurrent containers. Prints medians and
// ratios; writes JSON. Beside them, the floors under the two targets, in the same rounds:
// `/bin/true` (a C process's start), oneshot-floor.c (the kernel's part of one container run by
// a one-shot process, with its phases) and three no-op unary calls (Version) through the lean
// client.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { runtime } from '@berth/api';
import { createClient, createH2UnaryClient, startServiceProcess, waitServing } from '@berth/common';
import type { ServiceError } from '@grpc/grpc-js';

import { v1Mounts } from '../cgroups/cgroups';
import { makeBundle, uniqueId } from '../testing/bundle';

const ITER = Number(process.argv[2] ?? 60);
/** The pause after each timed run (see the loop). */
const SETTLE_MS = 20;
const BIN = path.resolve(__dirname, '..', 'bin', 'berth-runtime.js');
const SHIM = path.resolve(__dirname, '..', 'bin', 'berth-runtime-shim.js');

function run(cmd: string, args: string[], stdout?: (text: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(cmd, args, { stdio: ['ignore', stdout === undefined ? 'ignore' : 'pipe', 'pipe'] });
    let err = '';
    let out = '';
    p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err}`));
      else {
        stdout?.(out);
        resolve(ms);
      }
    });
  });
}

/** oneshot-floor.c's phases of one run, ms. */
interface FloorPhases { mkdirMs: number; cloneMs: number; attachMs: number; runMs: number; rmdirMs: number; totalMs: number }

/**
 * A parent cgroup for the floor's containers in every v1 hierarchy the runtime uses (cpuset
 * with cpus and mems, passed on to children), and the floor program compiled with the
 * system's cc. remove() takes the parents away.
 */
function prepareFloor(work: string): { bin: string; parents: string[]; remove: () => void } {
  const bin = path.join(work, 'oneshot-floor');
  execFileSync('cc', ['-O2', '-o', bin, path.resolve(__dirname, '..', '..', 'src', 'bench', 'oneshot-floor.c')], { stdio: 'inherit' });
  const parents: string[] = [];
  const remove = (): void => {
    for (const d of parents) {
      try { fs.rmdirSync(d); } catch { /* gone */ }
    }
  };
  try {
    for (const [ctl, mnt] of Object.entries(v1Mounts())) {
      const dir = path.join(mnt, `berth-bench-floor-${process.pid}`);
      if (parents.includes(dir)) continue;
      fs.mkdirSync(dir);
      parents.push(dir);
      if (ctl === 'cpuset') {
        for (const f of ['cpuset.cpus', 'cpuset.mems']) fs.writeFileSync(path.join(dir, f), fs.readFileSync(path.join(mnt, f), 'utf8').trim());
        fs.writeFileSync(path.join(dir, 'cgroup.clone_children'), '1');
      }
    }
  } catch (err) {
    remove();
    throw err;
  }
  return { bin, parents, remove };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const p90 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)]!;

/**
 * Clock ticks (USER_HZ) of /proc/<pid>/stat fields: 14 utime, 15 stime, 16 cutime, 17 cstime
 * (the last two: reaped children). CPU time is what a loaded machine distorts least.
 */
function cpuTicks(pid: number | 'self', fields: number[]): number {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return fields.reduce((sum, f) => sum + Number(rest[f - 3]), 0);
}
const TICK_MS = 10;

async function main(): Promise<void> {
  // Runtime state (--root of each runtime, the daemon's --state-dir) on a tmpfs, as /run is on
  // a real node (runc's default root is /run/runc); on this VM /run and /tmp are ext4, where
  // every mkdir/mkfifo/rename of a container's state costs a journal update. The same for all
  // runtimes.
  const stateFs = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
  const work = fs.mkdtempSync(path.join(stateFs, 'berth-bench-rt-'));
  const bundle = makeBundle(['/bin/true']);
  const roots = { runc: path.join(work, 'runc'), crun: path.join(work, 'crun'), berth: path.join(work, 'berth') };
  // crun 1.8 refuses to run on a hybrid host whose v2 root offers any controller. On this
  // machine hugetlb is bound to no v1 hierarchy, so the v2 root offers it: bind each such
  // controller to a v1 hierarchy for the run (the documented "empty v2" state). The hierarchy
  // is mounted only inside a private mount namespace held by a helper process, so no other
  // runtime on the host sees it or puts cgroups in it; when the helper goes, the namespace
  // and the mount go, and the kernel gives the controller back to the v2 root.
  const v2Root = '/sys/fs/cgroup/unified/cgroup.controllers';
  const borrowedCtls = fs.existsSync(v2Root) ? fs.readFileSync(v2Root, 'utf8').trim().split(/\s+/).filter(Boolean) : [];
  let holder: ReturnType<typeof spawn> | undefined;
  if (borrowedCtls.length > 0) {
    const script = borrowedCtls.map((c) => `mkdir -p /tmp/berth-borrow-${process.pid}-${c} && mount -t cgroup -o ${c} none /tmp/berth-borrow-${process.pid}-${c}`).join(' && ');
    holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `${script} && echo ready && exec sleep 100000`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      holder!.stdout!.once('data', () => resolve());
      holder!.once('exit', (code) => reject(new Error(`could not bind ${borrowedCtls.join(',')} to a v1 hierarchy (exit ${code})`)));
    });
    console.log(`note: bound ${borrowedCtls.join(', ')} to a private v1 hierarchy for the run so that crun runs`);
  }
  const sock = path.join(work, 'shim.sock');
  const svc = startServiceProcess(SHIM, ['--listen', `unix://${sock}`, '--state-dir', path.join(work, 'state'), '--log-level', 'warn']);
  const client = createClient(runtime.RuntimeServiceClient, { target: `unix://${sock}` });
  // The same unary calls through common's lean node:http2 client (what a caller on a latency-
  // critical path can use).
  const lean = createH2UnaryClient(runtime.RuntimeServiceService, { target: `unix://${sock}` });
  let holdBundle: ReturnType<typeof makeBundle> | undefined;
  let floor: ReturnType<typeof prepareFloor> | undefined;
  try {
    floor = prepareFloor(work);
    if ((await waitServing(`unix://${sock}`)) !== 'SERVING') throw new Error(`daemon did not start: ${svc.output()}`);
    const call = <Req, Res>(fn: (req: Req, cb: (e: ServiceError | null, r: Res) => void) => unknown, req: Req): Promise<Res> =>
      new Promise((resolve, reject) => fn.call(client, req, (e: ServiceError | null, r: Res) => (e ? reject(e) : resolve(r))));
    const createReq = runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'bench' }, annotations: { 'berth.io/oci-bundle': bundle.dir } } });
    // The wait goes out before the start (as a containerd client waits before it starts a task),
    // so the exit is answered the moment the daemon sees it.
    const apiOnce = async (): Promise<number> => {
      const t0 = process.hrtime.bigint();
      const { containerId } = await call<runtime.CreateContainerRequest, runtime.CreateContainerResponse>(client.createContainer, createReq);
      const exited = call<runtime.WaitContainerRequest, runtime.WaitContainerResponse>(client.waitContainer, { containerId });
      await call(client.startContainer, { containerId });
      if ((await exited).exitCode !== 0) throw new Error('/bin/true failed in the API path');
      await call(client.removeContainer, { containerId });
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    const leanOnce = async (): Promise<number> => {
      const t0 = process.hrtime.bigint();
      const { containerId } = await lean.createContainer(createReq);
      const exited = lean.waitContainer({ containerId });
      await lean.startContainer({ containerId });
      if ((await exited).exitCode !== 0) throw new Error('/bin/true failed in the lean API path');
      await lean.removeContainer({ containerId });
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };

    // The same four steps in one call: RunContainer with remove (as `crun run` is one command).
    const runReq = runtime.RunContainerRequest.fromPartial({ ...createReq, remove: true });
    const ranOk = (last: runtime.RunContainerResponse | undefined, how: string): void => {
      if (last?.phase !== runtime.RunContainerPhase.RUN_CONTAINER_PHASE_EXITED || last.exit?.exitCode !== 0 || !last.removed) throw new Error(`/bin/true failed in ${how}: ${JSON.stringify(last)}`);
    };
    const runGrpcOnce = async (): Promise<number> => {
      const t0 = process.hrtime.bigint();
      let last: runtime.RunContainerResponse | undefined;
      await new Promise<void>((resolve, reject) => {
        const st = client.runContainer(runReq);
        st.on('data', (m: runtime.RunContainerResponse) => (last = m));
        st.on('error', reject);
        st.on('end', () => resolve());
      });
      ranOk(last, 'RunContainer (grpc-js)');
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };
    const runLeanOnce = async (): Promise<number> => {
      const t0 = process.hrtime.bigint();
      let last: runtime.RunContainerResponse | undefined;
      for await (const m of lean.runContainer(runReq)) last = m;
      ranOk(last, 'RunContainer (lean client)');
      return Number(process.hrtime.bigint() - t0) / 1e6;
    };

    const cases: Record<string, () => Promise<number>> = {
      'node -e 0': () => run(process.execPath, ['-e', '0']),
      'runc run': () => run('/usr/sbin/runc', ['--root', roots.runc, 'run', '--bundle', bundle.dir, uniqueId('b')]),
      'crun run': () => run('/usr/bin/crun', ['--root', roots.crun, 'run', '--bundle', bundle.dir, uniqueId('b')]),
      'berth-runtime run (CLI)': () => run(process.execPath, [BIN, '--root', roots.berth, 'run', '--bundle', bundle.dir, uniqueId('b')]),
      'runtime-shim API (gRPC)': apiOnce,
      'API, lean h2 client': leanOnce,
      'API, RunContainer (gRPC)': runGrpcOnce,
      'API, RunContainer (lean)': runLeanOnce,
      '/bin/true (C process start)': () => run('/bin/true', []),
      'one-shot C container floor': () => run(floor!.bin, [bundle.rootfs, ...floor!.parents], (out) => phases.push(JSON.parse(out) as FloorPhases)),
      '3 no-op calls (lean Version)': async () => {
        const t0 = process.hrtime.bigint();
        for (let k = 0; k < 3; k++) await lean.version({ version: '' });
        return Number(process.hrtime.bigint() - t0) / 1e6;
      },
    };
    const phases: FloorPhases[] = [];
    const samples: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
    // CPU per run: for the CLIs, what the reaped runtime process and its children used (our
    // cutime+cstime); for the API path, what the daemon and its reaped containers used (not
    // the gRPC client, i.e. this process).
    const cpu: Record<string, number> = Object.fromEntries(Object.keys(cases).map((k) => [k, 0]));
    const daemonPid = svc.proc.pid!;
    const isApi = (name: string): boolean => name.startsWith('runtime-shim API') || name.startsWith('API,') || name.startsWith('3 no-op');
    const cpuOf = (name: string): number => (isApi(name) ? cpuTicks(daemonPid, [14, 15, 16, 17]) : cpuTicks('self', [16, 17]));
    // And the client's side of the API path (this process: the gRPC calls and the event stream).
    const clientCpuUs: Record<string, number> = {};
    for (const fn of Object.values(cases)) await fn(); // warm-up
    phases.length = 0;
    for (let i = 0; i < ITER; i++) {
      for (const [name, fn] of Object.entries(cases)) {
        const before = cpuOf(name);
        const own = process.cpuUsage();
        samples[name]!.push(await fn());
        // Untimed: what a run leaves to the kernel and the daemon afterwards (a network
        // namespace's teardown, a cgroup's removal, the daemon's pool refill) ends before the
        // next case is timed, so no case pays for the one before it; the CPU it takes is
        // still counted to the run that caused it (read after the pause).
        await new Promise((r) => setTimeout(r, SETTLE_MS));
        cpu[name]! += cpuOf(name) - before;
        if (isApi(name)) {
          const d = process.cpuUsage(own);
          clientCpuUs[name] = (clientCpuUs[name] ?? 0) + d.user + d.system;
        }
      }
    }
    const cpuMs = Object.fromEntries(Object.entries(cpu).map(([k, t]) => [k, (t * TICK_MS) / ITER]));
    const clientCpuMs = Object.fromEntries(Object.entries(clientCpuUs).map(([k, us]) => [k, us / 1000 / ITER]));

    // Peak memory of the daemon with 100 containers alive at once.
    const hold = makeBundle(['sleep', '60']);
    holdBundle = hold;
    const holdReq = runtime.CreateContainerRequest.fromPartial({ config: { metadata: { name: 'hold' }, annotations: { 'berth.io/oci-bundle': hold.dir } } });
    const status = (): Record<string, number> => Object.fromEntries(fs.readFileSync(`/proc/${svc.proc.pid}/status`, 'utf8').split('\n').filter((l) => /^Vm(HWM|RSS)/.test(l)).map((l) => [l.split(':')[0]!, Number(l.split(/\s+/)[1]) / 1024]));
    const rssBefore = status()['VmRSS']!;
    const t0 = process.hrtime.bigint();
    const ids = await Promise.all(Array.from({ length: 100 }, async () => {
      const { containerId } = await call<runtime.CreateContainerRequest, runtime.CreateContainerResponse>(client.createContainer, holdReq);
      await call(client.startContainer, { containerId });
      return containerId;
    }));
    const concurrentMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const mem = status();
    await Promise.all(ids.map(async (containerId: string) => {
      await call(client.stopContainer, { containerId, timeout: 0 });
      await call(client.removeContainer, { containerId });
    }));

    const med = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
    const crun = med['crun run']!;
    const nodeFloor = med['node -e 0']!;
    console.log(`\nruntime: create+start+wait+delete of /bin/true, busybox bundle, ${ITER} rounds (interleaved), ${os.cpus().length} cpus, load average ${os.loadavg()[0]!.toFixed(1)}, runtime state on ${stateFs}\n`);
    console.log(`${'case'.padEnd(28)}${'median ms'.padStart(11)}${'p90 ms'.padStart(10)}${'vs crun'.padStart(10)}${'cpu ms/run'.padStart(12)}${'cpu vs crun'.padStart(13)}`);
    for (const [k, v] of Object.entries(samples)) {
      console.log(`${k.padEnd(28)}${median(v).toFixed(2).padStart(11)}${p90(v).toFixed(2).padStart(10)}${(median(v) / crun).toFixed(2).padStart(9)}x${cpuMs[k]!.toFixed(2).padStart(12)}${(cpuMs[k]! / cpuMs['crun run']!).toFixed(2).padStart(12)}x`);
    }
    const api = med['runtime-shim API (gRPC)']!;
    const cli = med['berth-runtime run (CLI)']!;
    const leanApi = med['API, lean h2 client']!;
    const runLean = med['API, RunContainer (lean)']!;
    const runGrpc = med['API, RunContainer (gRPC)']!;
    console.log(`\nAPI path (target <= 0.5x crun): one RunContainer call / crun = ${(runLean / crun).toFixed(2)}x with the lean client, ${(runGrpc / crun).toFixed(2)}x with grpc-js; ` +
      `the four calls ${(leanApi / crun).toFixed(2)}x with the lean client, ${(api / crun).toFixed(2)}x with grpc-js (in CPU time ${(cpuMs['runtime-shim API (gRPC)']! / cpuMs['crun run']!).toFixed(2)}x)`);
    for (const [k, v] of Object.entries(clientCpuMs)) console.log(`client CPU per run, ${k}: ${v.toFixed(2)} ms`);
    console.log(`CLI path - node -e 0 = ${(cli - nodeFloor).toFixed(2)} ms (target <= 10 ms)`);
    // The floors: what the kernel and the transport need with none of a runtime's work.
    const phaseMed = Object.fromEntries((['mkdirMs', 'cloneMs', 'attachMs', 'runMs', 'rmdirMs', 'totalMs'] as const).map((k) => [k, median(phases.map((x) => x[k]))])) as unknown as FloorPhases;
    const kernelFloor = med['one-shot C container floor']! - med['/bin/true (C process start)']!;
    const apiFloor = med['3 no-op calls (lean Version)']! + kernelFloor;
    console.log(`one-shot C container floor, phases (median ms): cgroup mkdir ${phaseMed.mkdirMs.toFixed(2)}, clone ${phaseMed.cloneMs.toFixed(2)}, ` +
      `cgroup attach ${phaseMed.attachMs.toFixed(2)}, mounts+exec+exit ${phaseMed.runMs.toFixed(2)}, rmdir ${phaseMed.rmdirMs.toFixed(2)}`);
    console.log(`CLI floor: the kernel's part of one container run by a one-shot process = ${kernelFloor.toFixed(2)} ms over a C process start (the CLI target leaves 10 ms for it and all of the CLI's own work)`);
    console.log(`API floor: 3 no-op calls + that kernel part = ${apiFloor.toFixed(2)} ms (the four calls), one no-op call + that kernel part = ${(apiFloor - (2 / 3) * med['3 no-op calls (lean Version)']!).toFixed(2)} ms (RunContainer), vs 0.5x crun = ${(crun / 2).toFixed(2)} ms`);
    console.log(`daemon with 100 concurrent containers: VmHWM ${mem['VmHWM']!.toFixed(1)} MiB, VmRSS ${mem['VmRSS']!.toFixed(1)} MiB (idle RSS ${rssBefore.toFixed(1)} MiB); 100 create+start took ${concurrentMs.toFixed(0)} ms`);
    const out = process.env['BERTH_BENCH_RESULTS'];
    if (out !== undefined) {
      fs.mkdirSync(out, { recursive: true });
      const file = path.join(out, 'runtime.json');
      fs.writeFileSync(file, JSON.stringify({
        area: 'runtime', date: new Date().toISOString(), iterations: ITER, cpus: os.cpus().length, loadAverage: os.loadavg()[0], stateFs,
        medianMs: med, p90Ms: Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, p90(v)])),
        ratios: { apiVsCrun: api / crun, leanApiVsCrun: leanApi / crun, runContainerLeanVsCrun: runLean / crun, runContainerGrpcVsCrun: runGrpc / crun, cliVsCrun: cli / crun, runcVsCrun: med['runc run']! / crun, cliMinusNodeMs: cli - nodeFloor },
        cpuMsPerRun: cpuMs, clientCpuMsPerRun: clientCpuMs, cpuRatios: { apiVsCrun: cpuMs['runtime-shim API (gRPC)']! / cpuMs['crun run']!, cliMinusNodeMs: cpuMs['berth-runtime run (CLI)']! - cpuMs['node -e 0']! },
        daemon100: { vmHwmMiB: mem['VmHWM'], vmRssMiB: mem['VmRSS'], idleRssMiB: rssBefore, createStartMs: concurrentMs },
        floors: { oneShotPhasesMedianMs: phaseMed, kernelPartOfOneShotMs: kernelFloor, apiFloorMs: apiFloor, halfCrunMs: crun / 2 },
      }, null, 2));
      console.log(`results: ${file}`);
    }
  } finally {
    client.close();
    lean.close();
    await svc.stop(); // its close() removes every container it still has
    bundle.remove();
    holdBundle?.remove();
    floor?.remove();
    if (holder !== undefined) {
      holder.kill('SIGKILL');
      await new Promise((r) => holder!.once('exit', r));
      // The mount point dirs were made in the shared /tmp by the helper.
      for (const c of borrowedCtls) fs.rmSync(`/tmp/berth-borrow-${process.pid}-${c}`, { recursive: true, force: true });
      for (let i = 0; i < 50; i++) {
        const bound = fs.readFileSync('/proc/cgroups', 'utf8').split('\n').map((l) => l.split('\t')).filter((f) => borrowedCtls.includes(f[0]!) && f[1] !== '0');
        if (bound.length === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
