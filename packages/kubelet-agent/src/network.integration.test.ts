// The pod network through the real cni-manager process, and probes from the node into it: the
// test makes a "node" and a "pod" network namespace, runs berth-cni-manager for the node, sets
// the pod up through the agent's PodNetwork seam (the generated client behind promisify), serves
// HTTP inside the pod's namespace, and runs the agent's httpGet/tcpSocket probes from the node's
// namespace to the pod IP. Everything is torn down afterwards, also on failure. Traffic stays
// inside the namespaces the test made.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cni, core } from '@berth/api';
import { createClient, startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { networkSeam, podBandwidth, podIPs, setUpRequest, tearDownRequest } from './network';

const cniBin = path.resolve(__dirname, '..', '..', 'cni-manager', 'dist', 'bin', 'berth-cni-manager.js');
const proberJs = path.resolve(__dirname, '..', 'dist', 'probes', 'prober.js');
const id = crypto.randomBytes(3).toString('hex');
const nodeNs = `ka-n-${id}`;
const podNs = `ka-p-${id}`;
const ip = (...a: string[]) => execFileSync('ip', a, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

let dir: string;
let svc: ServiceProcess | undefined;
let client: { close(): void } | undefined;
let httpd: ChildProcess | undefined;

/** Runs one probe with the agent's compiled prober inside the node's network namespace. */
function probeFromNode(probe: object, podIP: string): { result: string; output: string } {
  const script = `const { runProbe } = require(${JSON.stringify(proberJs)}); const { core } = require('@berth/api');
runProbe(core.Probe.fromPartial(${JSON.stringify(probe)}), { podIP: ${JSON.stringify(podIP)}, containerId: 'c', container: core.Container.fromPartial({ name: 'web', ports: [{ name: 'http', containerPort: 8080 }] }) }, { exec: () => Promise.reject(new Error('no exec')) })
  .then((r) => process.stdout.write(JSON.stringify(r)));`;
  const out = execFileSync('ip', ['netns', 'exec', nodeNs, process.execPath, '-e', script], { cwd: path.resolve(__dirname, '..'), encoding: 'utf8', timeout: 20_000 });
  return JSON.parse(out);
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ka-net-'));
  ip('netns', 'add', nodeNs);
  ip('netns', 'add', podNs);
  ip('-n', nodeNs, 'link', 'set', 'lo', 'up');
  const sock = path.join(dir, 'cni.sock');
  svc = startServiceProcess(cniBin, ['--listen', `unix://${sock}`, '--state-dir', path.join(dir, 'state'), '--host-netns', `/run/netns/${nodeNs}`, '--log-level', 'warn']);
  expect(await waitServing(`unix://${sock}`, 30_000), svc.output()).toBe('SERVING');
}, 60_000);

afterAll(async () => {
  httpd?.kill('SIGKILL');
  client?.close();
  await svc?.stop();
  for (const ns of [podNs, nodeNs]) { try { ip('netns', 'del', ns); } catch { /* already gone */ } }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('pod network through the real cni-manager', () => {
  it('sets a pod up through the seam, probes reach it from the node, tear-down cuts it off', async () => {
    const raw = createClient(cni.NetworkServiceClient, { target: `unix://${path.join(dir, 'cni.sock')}` });
    client = raw;
    const net = networkSeam(raw);
    const pod = core.Pod.fromPartial({
      metadata: { name: 'web', namespace: 'default', uid: `uid-${id}`, annotations: { 'kubernetes.io/ingress-bandwidth': '10M', 'kubernetes.io/egress-bandwidth': '20M' } },
      spec: { containers: [{ name: 'web', ports: [{ name: 'http', containerPort: 8080 }] }] },
    });
    const sandboxId = `sb-${id}`;
    const req = setUpRequest(pod, sandboxId, `/run/netns/${podNs}`);
    expect(req.bandwidth).toMatchObject({ ingressRate: 10_000_000, egressRate: 20_000_000 });
    const res = await net.setUpPod(req);
    const [podIP] = podIPs(res);
    expect(podIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    expect(ip('-n', podNs, '-4', 'addr', 'show')).toContain(podIP);
    expect(podIPs(await net.podNetworkStatus(cni.PodNetworkStatusRequest.fromPartial({ sandboxId })))).toEqual([podIP]);

    // Something listens in the pod: busybox httpd on the pod IP.
    const www = path.join(dir, 'www');
    fs.mkdirSync(www);
    fs.writeFileSync(path.join(www, 'healthz'), 'ok');
    httpd = spawn('ip', ['netns', 'exec', podNs, 'busybox', 'httpd', '-f', '-p', `${podIP}:8080`, '-h', www], { stdio: 'ignore' });
    const http = { httpGet: { path: '/healthz', port: { stringValue: 'http' } }, timeoutSeconds: 2 };
    const tcp = { tcpSocket: { port: { intValue: 8080 } }, timeoutSeconds: 2 };
    let r = probeFromNode(http, podIP);
    for (let i = 0; i < 50 && r.result !== 'success'; i++) {
      await new Promise((res2) => setTimeout(res2, 100));
      r = probeFromNode(http, podIP);
    }
    expect(r).toEqual({ result: 'success', output: 'ok' });
    expect(probeFromNode(tcp, podIP).result).toBe('success');
    expect(probeFromNode({ ...http, httpGet: { ...http.httpGet, path: '/missing' } }, podIP)).toEqual({ result: 'failure', output: 'HTTP probe failed with statuscode: 404' });

    // The process in the pod stops: the port is closed.
    httpd.kill('SIGKILL');
    await new Promise((res2) => httpd!.once('exit', res2));
    httpd = undefined;
    expect(probeFromNode(tcp, podIP)).toEqual({ result: 'failure', output: `dial tcp ${podIP}:8080: ECONNREFUSED` });

    // Tear-down (twice: idempotent) removes the pod's interface.
    await net.tearDownPod(tearDownRequest(pod, sandboxId, `/run/netns/${podNs}`));
    await net.tearDownPod(tearDownRequest(pod, sandboxId, `/run/netns/${podNs}`));
    expect(ip('-n', podNs, '-4', 'addr', 'show')).not.toContain(podIP);
    await expect(net.podNetworkStatus(cni.PodNetworkStatusRequest.fromPartial({ sandboxId }))).rejects.toMatchObject({ code: 5 });
  });

  it.each([
    [{ 'kubernetes.io/ingress-bandwidth': 'fast' }, /metadata\.annotations\[kubernetes\.io\/ingress-bandwidth\]: quantities must match/],
    [{ 'kubernetes.io/egress-bandwidth': '10' }, /metadata\.annotations\[kubernetes\.io\/egress-bandwidth\]: 10 is outside 1k\.\.1P/],
  ])('rejects bandwidth annotations %j naming the annotation', (ann, re) => {
    expect(() => podBandwidth(ann)).toThrow(re);
    expect(podBandwidth({})).toBeUndefined();
  });
});
