// End to end on `berth up --etcd-members 3 --nodes 2` with one small example: the etcd leader is
// killed -9 and the cluster keeps working through the Store on the two members left (a new pod is
// created, scheduled and runs; reads, writes and a watch opened before the kill go on; `berth
// get nodes` answers); berth up starts the member again and it rejoins; Ctrl-C leaves nothing.
import { execFileSync, spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { store as storeApi } from '@berth/api';
import { StoreClient } from '@berth/apimachinery';
import type { ServiceProcess } from '@berth/common';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_EXAMPLES, podDone } from './cluster-examples';
import { until, upCluster, waitFor } from './cluster-testing/e2e';
import { leftovers } from './down';
import type { ClusterInfo } from './up';

const bin = path.resolve(__dirname, '..', 'dist', 'bin', 'berth.js');

/** Each member's endpoint and whether it leads, as etcdctl sees them (members that do not answer are left out). */
function etcdStatus(endpoints: string[]): { endpoint: string; leader: boolean }[] {
  const r = spawnSync('etcdctl', ['--endpoints', endpoints.join(','), '--command-timeout', '3s', 'endpoint', 'status', '-w', 'simple'], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
  // "http://127.0.0.1:PORT, <id>, <version>, <db size>, <is leader>, <is learner>, ..."
  return r.stdout.trim().split('\n').filter(Boolean).map((l) => l.split(', ')).map((f) => ({ endpoint: f[0], leader: f[4] === 'true' }));
}

/** The pid of the etcd member serving `endpoint` (0: none). */
function etcdPid(endpoint: string): number {
  return Number(spawnSync('pgrep', ['-f', '--', `--listen-client-urls ${endpoint} `], { encoding: 'utf8' }).stdout.trim().split('\n')[0]) || 0;
}

describe('berth up --etcd-members 3 --nodes 2: the etcd leader killed -9', () => {
  const c = upCluster('etcd', (dir) => {
    const examples = path.join(dir, 'examples');
    fs.mkdirSync(examples);
    fs.copyFileSync(path.join(DEFAULT_EXAMPLES, 'udp-echo.yaml'), path.join(examples, 'udp-echo.yaml'));
    return ['--nodes', '2', '--etcd-members', '3', '--examples', examples];
  });
  let runDir: string;
  let stateDir: string;
  let up: ServiceProcess | undefined;
  let info: ClusterInfo;
  let env: NodeJS.ProcessEnv;
  beforeAll(() => { ({ runDir, stateDir, up, info, env } = c); });

  const berth = (args: string[], input?: string) => {
    const r = spawnSync(process.execPath, [bin, ...args], { env, encoding: 'utf8', input, timeout: 60_000 });
    return { code: r.status, out: r.stdout + r.stderr };
  };

  it('runs three etcd members with one leader', () => {
    expect(up!.output(), up!.output().slice(-4000)).toMatch(/All examples are Running and Ready/);
    expect(info.etcd).toHaveLength(3);
    const st = etcdStatus(info.etcd);
    expect(st.map((s) => s.endpoint).sort()).toEqual([...info.etcd].sort());
    expect(st.filter((s) => s.leader)).toHaveLength(1);
  });

  it('with the leader killed -9 the Store keeps working: a new pod is scheduled and Running, a watch opened before sees it all, berth get nodes answers; the member comes back and rejoins', async () => {
    const store = new StoreClient({ target: info.store.unix, defaultDeadlineMs: 15_000 });
    const stopWatch = new AbortController();
    const events: storeApi.WatchEvent[] = [];
    let watchError: unknown;
    const pod = `survivor-${crypto.randomBytes(3).toString('hex')}`;
    try {
      const rv = (await store.list({ resource: 'pods', namespace: 'default' })).resourceVersion;
      const watching = (async () => {
        try {
          for await (const ev of store.watch({ resource: 'pods', namespace: 'default', resourceVersion: rv }, stopWatch.signal)) events.push(ev);
        } catch (e) { watchError = e; }
      })();

      const leader = etcdStatus(info.etcd).find((s) => s.leader)!.endpoint;
      const pid = etcdPid(leader);
      expect(pid).toBeGreaterThan(0);
      process.kill(pid, 'SIGKILL');

      // Writes go on at once (through the CLI over mutual TLS, as a user would make them).
      const manifest = `apiVersion: v1\nkind: Pod\nmetadata: {name: ${pod}, labels: {app: survivor}}\nspec: {terminationGracePeriodSeconds: 1, containers: [{name: main, image: berth.local/busybox:latest, imagePullPolicy: Never, command: [sleep, "3600"]}]}\n`;
      expect(berth(['apply', '-f', '-'], manifest)).toMatchObject({ code: 0, out: expect.stringContaining(`pod/${pod} created`) });
      // The scheduler binds it and node-1's kubelet runs it: both go through the Store.
      const running = await until(async () => (await store.get('pods', 'default', pod)).pod!, podDone, 90_000);
      expect(running.status?.phase, JSON.stringify(running.status)).toBe('Running');
      expect(running.spec?.nodeName).toBe('node-1');
      // Reads: every node is still there and Ready.
      const nodes = berth(['get', 'nodes']);
      expect(nodes.code, nodes.out).toBe(0);
      expect(nodes.out).toMatch(/node-1\s+Ready/);
      expect(nodes.out).toMatch(/node-2\s+Ready/);
      // A write that deletes: the pod goes away gracefully.
      expect(berth(['delete', 'pod', pod])).toMatchObject({ code: 0 });
      await until(async () => (await store.list({ resource: 'pods', namespace: 'default' })).items.some((o) => o.pod?.metadata?.name === pod), (x) => !x, 60_000);

      // The watch opened before the kill saw the pod's whole life, in order, with no error.
      await until(async () => events.some((e) => e.type === 'DELETED' && e.object?.pod?.metadata?.name === pod), Boolean, 10_000);
      stopWatch.abort();
      await watching;
      expect(watchError).toBeUndefined();
      const mine = events.filter((e) => e.object?.pod?.metadata?.name === pod);
      expect(mine[0]?.type).toBe('ADDED');
      expect(mine.at(-1)?.type).toBe('DELETED');
      expect(mine.some((e) => e.type === 'MODIFIED' && e.object?.pod?.spec?.nodeName === 'node-1')).toBe(true);
      expect(mine.some((e) => e.object?.pod?.status?.phase === 'Running')).toBe(true);
      expect(events.filter((e) => e.type === 'ERROR')).toEqual([]);
      const rvs = mine.map((e) => BigInt(e.object!.pod!.metadata!.resourceVersion));
      expect(rvs).toEqual([...rvs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));

      // berth up starts the killed member again with its data, and it rejoins: all three answer.
      await waitFor(up!, /etcd member berth-\d started again/, 60_000);
      const back = await until(async () => etcdStatus(info.etcd), (s) => s.length === 3, 30_000);
      expect(back.map((s) => s.endpoint).sort()).toEqual([...info.etcd].sort());
      expect(back.filter((s) => s.leader)).toHaveLength(1);
      expect(etcdPid(leader)).not.toBe(pid);
      const health = spawnSync('etcdctl', ['--endpoints', leader, '--command-timeout', '5s', 'endpoint', 'health'], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
      expect(health.status, health.stdout + health.stderr).toBe(0);
    } finally {
      stopWatch.abort();
      store.raw.close();
    }
  }, 240_000);

  it('Ctrl-C stops everything, the three etcd members too, and leaves nothing on the host', async () => {
    const members = info.etcd.map(etcdPid);
    expect(members.every((p) => p > 0)).toBe(true);
    up!.proc.kill('SIGINT');
    expect((await up!.exited).code).toBe(0);
    expect(leftovers(runDir, stateDir)).toEqual({ processes: [], mounts: [], netns: [], links: [], cgroups: [] });
    expect(info.etcd.map(etcdPid)).toEqual([0, 0, 0]);
    expect(execFileSync('ip', ['-4', 'route', 'show'], { encoding: 'utf8' })).not.toContain(info.underlay.cidr);
    expect(spawnSync('pgrep', ['-f', stateDir]).stdout.toString().trim()).toBe('');
  }, 120_000);
});

