// `berth up` for real (without the examples; cluster.e2e.test.ts runs them): etcd, the control
// plane and two nodes, each node in its own netns on the underlay bridge reaching the Store over
// mutual TLS with its own certificate; SIGTERM leaves nothing on the host; a kill -9 is cleaned
// up by the next run and by `berth down`.
import { execFileSync, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdCluster, checkHealth, startServiceProcess, type ServiceProcess } from '@berth/common';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { certSubject } from './certs';
import { runId } from './cluster-net';
import { cleanupRun, leftovers } from './down';
import { parseUpArgs, readClusterInfo } from './up';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth.js');

/** Running and not a zombie. */
const alive = (pid: number) => { try { return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; } };
function childrenOf(pid: number): number[] {
  try { return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number); } catch { return []; }
}

async function waitForOutput(p: ServiceProcess, re: RegExp, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!re.test(p.output())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; output:\n${p.output()}`);
    if (p.proc.exitCode !== null) throw new Error(`berth exited ${p.proc.exitCode}; output:\n${p.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('berth up flags', () => {
  it.each([
    [['--nodes', '0'], /--nodes: expected a whole number from 1 to 50, got "0"/],
    [['--network', 'vxlan'], /--network: expected bridge or routed, got "vxlan"/],
    [['--etcd-members', '3', '--etcd-endpoints', 'http://127.0.0.1:2379'], /--etcd-members and --etcd-endpoints exclude each other/],
    [['--etcd-endpoints', 'localhost:2379'], /--etcd-endpoints: expected http:\/\/host:port URLs, got "localhost:2379"/],
    [['--wait-timeout', 'soon'], /--wait-timeout: expected a duration/],
    [['--examples', '/nonexistent-berth-dir'], /--examples: \/nonexistent-berth-dir is not a directory/],
    [['--frobnicate'], /Unknown option '--frobnicate'/],
    [['extra'], /unexpected argument "extra"/],
  ])('%j is refused naming the option', (args, re) => {
    expect(() => parseUpArgs(args)).toThrow(re);
  });
  it('parses a full set', () => {
    expect(parseUpArgs(['--nodes', '3', '--network', 'routed', '--etcd-members', '3', '--no-examples', '--wait-timeout', '2m'])).toEqual({ nodes: 3, network: 'routed', etcdMembers: 3, examples: false, waitTimeoutMs: 120_000 });
  });
  it('the CLI exits 2 with the message', () => {
    const r = spawnSync(process.execPath, [bin, 'up', '--nodes', 'many'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/error: berth up: --nodes: expected a whole number/);
  });
});

describe('berth up', () => {
  let dir: string;
  let runDir: string;
  let stateDir: string;
  let up: ServiceProcess | undefined;
  let pids: number[] = [];
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-up-${crypto.randomBytes(3).toString('hex')}-`));
    runDir = path.join(dir, 'run');
    stateDir = path.join(dir, 'state');
  });
  afterEach(async () => {
    await up?.stop(60_000);
    for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
    // Whatever a failed test left: the same clean-up `berth down` does, by this run's names.
    await cleanupRun(runDir, stateDir, () => undefined);
    up = undefined;
    pids = [];
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('brings up etcd, the control plane and two nodes on the underlay; SIGTERM leaves nothing', async () => {
    const env = { ...process.env, BERTH_RUN_DIR: runDir, BERTH_STATE_DIR: stateDir };
    up = startServiceProcess(bin, ['up', '--nodes', '2', '--no-examples'], env);
    await waitForOutput(up, /Berth is up/);
    const info = readClusterInfo(runDir)!;
    expect(info.runId).toBe(runId(runDir));
    expect(info.nodes.map((n) => n.name)).toEqual(['node-1', 'node-2']);
    for (const s of [...info.controlPlane, ...info.nodes.flatMap((n) => n.services)]) expect(await checkHealth(s.socket)).toBe('SERVING');
    // The Store's mTLS listener is on the underlay, not loopback.
    expect(info.store.tcp.startsWith(`${info.underlay.hostIp}:`)).toBe(true);
    expect(info.underlay.hostIp).toMatch(/^10\.250\.\d+\.1$/);

    // Each node's services run inside its netns (nsenter --net), whose only link out is its veth
    // on the underlay, and there is no default route out of a node.
    for (const n of info.nodes) {
      const nsIno = fs.statSync(path.join('/run/netns', n.netns)).ino;
      const nodePids = execFileSync('pgrep', ['-f', `${n.runDir}/`], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
      expect(nodePids.length).toBe(3);
      for (const pid of nodePids) expect(fs.statSync(`/proc/${pid}/ns/net`).ino).toBe(nsIno);
      expect(execFileSync('ip', ['-n', n.netns, '-4', 'route', 'show', 'default'], { encoding: 'utf8' }).trim()).toBe('');
      expect(execFileSync('ip', ['-n', n.netns, '-4', 'addr', 'show', 'eth0'], { encoding: 'utf8' })).toContain(`inet ${n.ip}/24`);
      // its own cgroup root: every controller a symlink to the node's own cgroup
      expect(fs.realpathSync(path.join(n.cgroupRoot, 'memory'))).toBe(`/sys/fs/cgroup/memory/berth-${info.runId}-${n.name}`);
      // and its own client certificate
      expect(certSubject(path.join(stateDir, 'pki', `node-${n.name}.crt`))).toMatchObject({ cn: `system:node:${n.name}`, groups: ['system:nodes'] });
    }
    // From inside node-1's namespace, its certificate reaches the Store over the underlay and is
    // a node there (and node-2's address answers across the bridge).
    const n1 = info.nodes[0];
    const conf = path.join(dir, 'node-1.conf');
    fs.writeFileSync(conf, [
      'apiVersion: v1', 'kind: Config', 'current-context: n',
      `clusters: [{name: c, cluster: {server: "${info.store.tcp}", certificate-authority: ${info.store.ca}}}]`,
      `users: [{name: u, user: {client-certificate: ${path.join(stateDir, 'pki', 'node-node-1.crt')}, client-key: ${path.join(stateDir, 'pki', 'node-node-1.key')}}}]`,
      'contexts: [{name: n, context: {cluster: c, user: u}}]', '',
    ].join('\n'));
    const who = spawnSync('nsenter', [`--net=/run/netns/${n1.netns}`, '--', process.execPath, bin, 'auth', 'whoami', '--kubeconfig', conf], { encoding: 'utf8', env });
    expect(who.stdout + who.stderr).toMatch(/Username\s+system:node:node-1/);
    execFileSync('ip', ['netns', 'exec', n1.netns, 'busybox', 'ping', '-c', '1', '-W', '2', info.nodes[1].ip], { stdio: 'ignore' }); // no ping(8) here: busybox's
    // The admin config works with no flags (unix socket) and over mTLS on the underlay.
    const berth = (args: string[]) => { const r = spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8' }); return { code: r.status, out: r.stdout + r.stderr }; };
    expect(berth(['auth', 'whoami', '--context', 'local-tls'])).toMatchObject({ code: 0, out: expect.stringMatching(/Username\s+admin/) });
    expect(berth(['status'])).toMatchObject({ code: 0, out: expect.stringMatching(/node-2\/kubelet-agent\s+unix:\S+\s+SERVING/) });
    expect(fs.statSync(path.join(stateDir, 'pki', 'ca.key')).mode & 0o777).toBe(0o600);
    // a second `berth up` on the same run dir refuses to start
    const second = startServiceProcess(bin, ['up', '--no-examples'], env);
    expect((await second.exited).code).toBe(1);
    expect(second.output()).toMatch(/another berth up\/init\/join \(pid \d+\) is running/);

    pids = childrenOf(up.proc.pid!);
    expect(pids.length).toBe(2 + 3 * 2 + 1); // control plane, three services per node, etcd
    expect(await up.stop(60_000)).toEqual({ code: 0, signal: null });
    expect(up.output()).toMatch(/stopped; nothing left running/);
    expect(pids.filter(alive)).toEqual([]);
    expect(leftovers(runDir, stateDir)).toEqual({ processes: [], mounts: [], netns: [], links: [], cgroups: [] });
    expect(fs.existsSync(path.join(runDir, 'up.pid'))).toBe(false);
    expect(execFileSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' })).not.toContain(info.underlay.cidr);
  }, 180_000);

  it('--etcd-endpoints: the cluster keeps its state in an existing etcd, which berth up leaves running', async () => {
    const etcd = await EtcdCluster.start({ dataRoot: path.join(dir, 'external-etcd'), namePrefix: 'ext' });
    try {
      const env = { ...process.env, BERTH_RUN_DIR: runDir, BERTH_STATE_DIR: stateDir };
      up = startServiceProcess(bin, ['up', '--nodes', '1', '--no-examples', '--etcd-endpoints', etcd.endpoints.join(',')], env);
      await waitForOutput(up, /Berth is up/);
      expect(up.output()).toContain(`${etcd.endpoints.join(',')}  (existing cluster)`);
      expect(childrenOf(up.proc.pid!).some((p) => fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('/usr/bin/etcd'))).toBe(false);
      pids.push(...childrenOf(up.proc.pid!));
      const ns = `ext-${crypto.randomBytes(3).toString('hex')}`;
      const r = spawnSync(process.execPath, [bin, 'apply', '-f', '-'], { env, encoding: 'utf8', input: `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${ns}}\n` });
      expect(r.stdout).toContain(`namespace/${ns} created`);
      // the object is in that etcd, read with Debian's etcdctl
      const keys = execFileSync('etcdctl', ['--endpoints', etcd.endpoints[0], 'get', '--prefix', '--keys-only', '/registry/namespaces/'], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
      expect(keys).toContain(`/registry/namespaces/${ns}`);
      expect(await up.stop(60_000)).toEqual({ code: 0, signal: null });
      expect(etcd.isRunning(0)).toBe(true);
      expect(leftovers(runDir, stateDir)).toEqual({ processes: [], mounts: [], netns: [], links: [], cgroups: [] });
    } finally {
      await etcd.destroy();
    }
  }, 180_000);

  it('after a kill -9 of berth up, the next berth up takes over, and berth down leaves nothing', async () => {
    const env = { ...process.env, BERTH_RUN_DIR: runDir, BERTH_STATE_DIR: stateDir };
    up = startServiceProcess(bin, ['up', '--nodes', '1', '--no-examples'], env);
    await waitForOutput(up, /Berth is up/);
    const first = childrenOf(up.proc.pid!);
    pids.push(...first);
    up.proc.kill('SIGKILL');
    await up.exited;
    expect(first.filter(alive).length).toBe(first.length); // orphans keep running...
    const left = leftovers(runDir, stateDir);
    expect(left.netns.length).toBe(1);
    expect(left.cgroups.length).toBeGreaterThan(0);
    up = startServiceProcess(bin, ['up', '--nodes', '1', '--no-examples'], env);
    await waitForOutput(up, /Berth is up/);
    expect(up.output()).toMatch(/taking over from a previous run/);
    expect(first.filter(alive)).toEqual([]); // ...until the next berth up stops them
    const second = childrenOf(up.proc.pid!);
    pids.push(...second);
    // `berth down` from another terminal stops it and cleans up.
    const down = spawnSync(process.execPath, [bin, 'down'], { env, encoding: 'utf8' });
    expect(down.stdout + down.stderr).toMatch(/berth down: nothing left running/);
    expect(down.status).toBe(0);
    expect((await up.exited).code).toBe(0);
    expect(second.filter(alive)).toEqual([]);
    expect(leftovers(runDir, stateDir)).toEqual({ processes: [], mounts: [], netns: [], links: [], cgroups: [] });
  }, 180_000);
});
