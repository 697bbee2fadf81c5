// Node facts read from this machine, compared with what the standard tools say (nproc, free,
// df, uname, hostname), plus allocatable arithmetic and the node conditions as tables.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Quantity } from '@berth/apimachinery';
import { describe, expect, it } from 'vitest';
import { buildNode, countCpuList, goArch, machineFacts, nodeConditions, nodeResources, shouldReportNodeStatus } from './node';

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' }).trim();
const GiB = 1024n ** 3n;

describe('node facts from the real machine', () => {
  it('cpu, memory and ephemeral storage match nproc, free and df', () => {
    const m = machineFacts({ rootDir: os.tmpdir() });
    expect(m.cpus).toBe(Number(sh('nproc', ['--all'])));
    const free = BigInt(sh('free', ['-b']).split('\n')[1].split(/\s+/)[1]);
    expect(m.memoryBytes).toBe(free);
    const df = BigInt(sh('df', ['-B1', '--output=size', os.tmpdir()]).split('\n')[1].trim());
    expect(m.ephemeralBytes).toBe(df);
  });

  it('registers a Node with capacity, allocatable, addresses, nodeInfo and the well-known labels', () => {
    const node = buildNode({ rootDir: os.tmpdir(), maxPods: 50, labels: { 'example.com/pool': 'blue' }, taints: [{ key: 'dedicated', value: 'ci', effect: 'NoSchedule', timeAdded: '' }] });
    const host = sh('hostname', []).toLowerCase();
    expect(node.metadata!.name).toBe(host);
    expect(node.metadata!.labels).toEqual({ 'example.com/pool': 'blue', 'kubernetes.io/hostname': host, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': goArch() });
    expect(goArch()).toBe(sh('dpkg', ['--print-architecture']));
    expect(node.spec!.taints).toEqual([{ key: 'dedicated', value: 'ci', effect: 'NoSchedule', timeAdded: '' }]);
    expect(node.status!.capacity.pods).toBe('50');
    expect(node.status!.capacity.cpu).toBe(sh('nproc', ['--all']));
    expect(node.status!.addresses.find((a) => a.type === 'Hostname')!.address).toBe(host);
    const info = node.status!.nodeInfo!;
    expect(info.kernelVersion).toBe(sh('uname', ['-r']));
    expect(info.bootID).toBe(fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    expect(info.machineID).toBe(fs.readFileSync('/etc/machine-id', 'utf8').trim());
    expect(info.osImage).toMatch(/^Debian GNU\/Linux/);
    expect(info).toMatchObject({ operatingSystem: 'linux', architecture: goArch(), containerRuntimeVersion: 'berth://0.1.0' });
    const alloc = Quantity.parse(node.status!.allocatable.memory).value();
    expect(alloc).toBe(Quantity.parse(node.status!.capacity.memory).value() - 100n * 1024n * 1024n);
  });

  it('takes the InternalIP from the configuration when given', () => {
    const node = buildNode({ rootDir: os.tmpdir(), nodeIP: '192.0.2.10', nodeName: 'Node-A' });
    expect(node.status!.addresses).toEqual([{ type: 'InternalIP', address: '192.0.2.10' }, { type: 'Hostname', address: 'node-a' }]);
  });

  it('caps memory by the root memory cgroup and cpus by the root cpuset (fixture roots)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-node-'));
    try {
      fs.mkdirSync(path.join(dir, 'proc'));
      fs.writeFileSync(path.join(dir, 'proc', 'meminfo'), 'MemTotal:       16384000 kB\nMemFree: 1 kB\n');
      fs.mkdirSync(path.join(dir, 'cg', 'cpuset'), { recursive: true });
      fs.mkdirSync(path.join(dir, 'cg', 'memory'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'cg', 'cpuset', 'cpuset.cpus'), '0\n');
      fs.writeFileSync(path.join(dir, 'cg', 'memory', 'memory.limit_in_bytes'), `${4n * GiB}\n`);
      const m = machineFacts({ rootDir: dir, procRoot: path.join(dir, 'proc'), cgroupRoot: path.join(dir, 'cg') });
      expect(m.cpus).toBe(1);
      expect(m.memoryBytes).toBe(4n * GiB);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('allocatable', () => {
  const m = { cpus: 4, memoryBytes: 16n * GiB, ephemeralBytes: 100n * GiB };
  it.each([
    [{}, { cpu: '4', memory: '16284Mi', pods: '110', 'ephemeral-storage': '90Gi' }],
    [{ systemReserved: { cpu: '500m', memory: '1Gi' }, kubeReserved: { cpu: '250m', memory: '512Mi', 'ephemeral-storage': '1Gi' }, evictionHard: { 'memory.available': '200Mi', 'nodefs.available': '5%' } }, { cpu: '3250m', memory: '14648Mi', pods: '110', 'ephemeral-storage': '94Gi' }],
  ])('%j', (cfg, want) => {
    const r = nodeResources({ rootDir: '/', ...cfg }, m);
    expect(r.capacity).toEqual({ cpu: '4', memory: '16Gi', pods: '110', 'ephemeral-storage': '100Gi' });
    expect(r.allocatable).toEqual(want);
  });
  it.each([
    [{ systemReserved: { gpu: '1' } }, /systemReserved\.gpu: unknown resource/],
    [{ kubeReserved: { cpu: 'lots' } }, /kubeReserved\.cpu: quantities must match/],
    [{ maxPods: 0 }, /maxPods: must be a positive integer/],
  ])('rejects %j naming the option', (cfg, re) => {
    expect(() => nodeResources({ rootDir: '/', ...cfg }, m)).toThrow(re);
  });
  it.each([['0-3,8,10-11', 7], ['0', 1], ['', 0]])('cpuset list %j has %d cpus', (l, n) => expect(countCpuList(l)).toBe(n));
});

describe('node conditions', () => {
  const t0 = Date.parse('2026-02-01T00:00:00Z');
  it('moves transition times only on change and reports on change or every 5 minutes', () => {
    const ok = { memoryPressure: false, diskPressure: false, pidPressure: false };
    const c1 = nodeConditions([], ok, t0);
    expect(c1.map((c) => `${c.type}=${c.status}:${c.reason}`)).toEqual(['MemoryPressure=False:KubeletHasSufficientMemory', 'DiskPressure=False:KubeletHasNoDiskPressure', 'PIDPressure=False:KubeletHasSufficientPID', 'Ready=True:KubeletReady']);
    const c2 = nodeConditions(c1, { ...ok, memoryPressure: true }, t0 + 60_000);
    expect(c2[0]).toMatchObject({ status: 'True', reason: 'KubeletHasInsufficientMemory', lastTransitionTime: '2026-02-01T00:01:00Z', lastHeartbeatTime: '2026-02-01T00:01:00Z' });
    expect(c2[3].lastTransitionTime).toBe('2026-02-01T00:00:00Z');
    expect(shouldReportNodeStatus(c1, c2, t0, t0 + 60_000)).toBe(true);
    const c3 = nodeConditions(c2, { ...ok, memoryPressure: true }, t0 + 120_000);
    expect(shouldReportNodeStatus(c2, c3, t0 + 60_000, t0 + 120_000)).toBe(false);
    expect(shouldReportNodeStatus(c2, c3, t0 + 60_000, t0 + 360_000)).toBe(true);
    const down = nodeConditions(c3, { ...ok, notReadyReason: 'container runtime is down' }, t0 + 400_000);
    expect(down[3]).toMatchObject({ status: 'False', reason: 'KubeletNotReady', message: 'container runtime is down' });
  });
});
