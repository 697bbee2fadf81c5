// `berth explain -f` against a real berth-scheduler process serving only its socket (no
// cluster): the verdicts come from the scheduler's own filter and score plugins.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startServiceProcess, waitServing, type ServiceProcess } from '@berth/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSnapshot, runExplain } from './explain';
import { serviceBin } from './services';

const snapshot = path.resolve(__dirname, '..', '..', '..', 'examples', 'explain', 'snapshot.yaml');

describe('berth explain', () => {
  let dir: string;
  let sched: ServiceProcess;
  let endpoint: string;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-explain-'));
    endpoint = `unix://${path.join(dir, 'scheduler.sock')}`;
    sched = startServiceProcess(serviceBin('scheduler'), ['--listen', endpoint, '--state-dir', path.join(dir, 'state')]);
    expect(await waitServing(endpoint), sched.output()).toBe('SERVING');
  });
  afterAll(async () => {
    await sched?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const run = async (args: string[]) => {
    let out = '', err = '';
    const code = await runExplain({ stdout: (s) => (out += s), stderr: (s) => (err += s), env: {} }, [...args, '--scheduler-endpoint', endpoint]);
    return { code, out, err };
  };

  it('explains a what-if snapshot: who rejects which node, and where the pod would go', async () => {
    const r = await run(['-f', snapshot]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(/^NODE\s+FITS\s+SCORE\s+DETAIL$/);
    expect(lines[1]).toMatch(/^node-3\s+yes\s+\d+\s+\S+=/); // the only node with room and no taint
    expect(r.out).toMatch(/^node-1\s+no\s+-\s+NodeResourcesFit: Insufficient cpu$/m);
    expect(r.out).toMatch(/^node-2\s+no\s+-\s+TaintToleration: node\(s\) had untolerated taint \{dedicated: gpu\}$/m);
    expect(r.out).toMatch(/^node-4\s+no\s+-\s+NodeResourcesFit: Insufficient cpu$/m);
    expect(r.out).toMatch(/^selected node: node-3$/m);
  });

  it('exits 1 when nothing fits, with Kubernetes\' summary message', async () => {
    const file = path.join(dir, 'nofit.yaml');
    fs.writeFileSync(file, fs.readFileSync(snapshot, 'utf8').replace('cpu: "1500m"', 'cpu: "16"'));
    const r = await run(['-f', file]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/0\/4 nodes are available: /);
    expect(r.out).toMatch(/selected node: <none>/);
  });

  it('rejects a malformed snapshot naming the field', () => {
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'pod: {apiVersion: v1, kind: Pod, metadata: {name: x}, spec: {containerz: []}}\nnodes: []\n');
    expect(() => readSnapshot(file)).toThrow(/containerz/);
    fs.writeFileSync(file, 'pod: {apiVersion: v1, kind: Pod, metadata: {name: x}}\nnodez: []\n');
    expect(() => readSnapshot(file)).toThrow(`${file}: unknown field "nodez" (expected pod, nodes, existingPods)`);
  });

  it('gives usage errors without calling the scheduler', async () => {
    expect(await run(['deployment', 'x'])).toMatchObject({ code: 1, err: expect.stringMatching(/only pods are scheduled/) });
    expect(await run(['pod'])).toMatchObject({ code: 1, err: expect.stringMatching(/pod name required/) });
  });
});
