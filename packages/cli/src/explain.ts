// `berth explain pod NAME [-n NS]` and `berth explain -f snapshot.yaml`: why a pod would or would
// not fit each node, and each scoring plugin's share, from the scheduler's Explain RPC. A pod
// reference is decided against the live cluster state the scheduler holds; a snapshot file
// (`pod`, `nodes`, `existingPods`) is a what-if and needs no cluster. Nothing is bound.
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import type { ServiceError } from '@grpc/grpc-js';
import YAML from 'yaml';
import { core, scheduler } from '@berth/api';
import { decodeObject } from '@berth/apimachinery';
import { createClient, defaultSocket } from '@berth/common';

export interface ExplainIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
}

const USAGE = 'Usage: berth explain pod NAME [-n NAMESPACE] | berth explain -f SNAPSHOT.yaml  [--scheduler-endpoint unix:///path] [--profile NAME]\n';

function decodeAs<K extends 'pod' | 'node'>(kind: K, v: unknown, where: string): K extends 'pod' ? core.Pod : core.Node {
  const obj = decodeObject(v, where);
  const got = obj[kind];
  if (!got) throw new Error(`${where}: expected a ${kind === 'pod' ? 'Pod' : 'Node'}`);
  return got as never;
}

/** Reads a snapshot file: a mapping with exactly `pod`, `nodes` and optional `existingPods`. */
export function readSnapshot(file: string): scheduler.Snapshot {
  let doc: unknown;
  try {
    doc = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`${file}: expected a mapping with pod, nodes and existingPods`);
  const d = doc as Record<string, unknown>;
  for (const k of Object.keys(d)) if (!['pod', 'nodes', 'existingPods'].includes(k)) throw new Error(`${file}: unknown field "${k}" (expected pod, nodes, existingPods)`);
  if (!d.pod) throw new Error(`${file}: pod: Required value`);
  if (!Array.isArray(d.nodes)) throw new Error(`${file}: nodes: expected a list of Node manifests`);
  if (d.existingPods !== undefined && !Array.isArray(d.existingPods)) throw new Error(`${file}: existingPods: expected a list of Pod manifests`);
  return scheduler.Snapshot.fromPartial({
    pod: decodeAs('pod', d.pod, `${file}: pod`),
    nodes: d.nodes.map((n, i) => decodeAs('node', n, `${file}: nodes[${i}]`)),
    existingPods: ((d.existingPods as unknown[]) ?? []).map((p, i) => decodeAs('pod', p, `${file}: existingPods[${i}]`)),
  });
}

/** The verdict table: one row per node, feasible ones by total score first. */
export function formatExplain(res: scheduler.ExplainResponse): string {
  const rows = [...res.nodes].sort((a, b) => Number(b.feasible) - Number(a.feasible) || b.totalScore - a.totalScore || a.nodeName.localeCompare(b.nodeName));
  const cells = rows.map((n) => [
    n.nodeName,
    n.feasible ? 'yes' : 'no',
    n.feasible ? String(n.totalScore) : '-',
    n.feasible
      ? n.scores.filter((s) => s.weighted !== 0 || s.score !== 0).map((s) => `${s.plugin}=${s.score}x${s.weight}`).join(' ')
      : `${n.failedPlugin}: ${n.reasons.join('; ')}`,
  ]);
  const head = ['NODE', 'FITS', 'SCORE', 'DETAIL'];
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i === c.length - 1 ? x : x.padEnd(w[i]))).join('   ').trimEnd();
  const out = [line(head), ...cells.map(line), ''];
  if (res.message) out.push(res.message);
  out.push(res.selectedNode ? `selected node: ${res.selectedNode}` : 'selected node: <none> (the pod does not fit any node)');
  return out.join('\n') + '\n';
}

export async function runExplain(io: ExplainIo, args: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        filename: { type: 'string', short: 'f' },
        namespace: { type: 'string', short: 'n' },
        'scheduler-endpoint': { type: 'string' },
        profile: { type: 'string' },
      },
    }));
  } catch (err) {
    io.stderr(`error: ${(err as Error).message}\n${USAGE}`);
    return 1;
  }
  let req: scheduler.ExplainRequest;
  try {
    if (values.filename) {
      if (positionals.length) throw new Error('give either -f SNAPSHOT or pod NAME, not both');
      req = scheduler.ExplainRequest.fromPartial({ snapshot: readSnapshot(String(values.filename)), profile: (values.profile as string) ?? '' });
    } else {
      if (positionals[0] !== 'pod' && positionals[0] !== 'pods' && positionals[0] !== 'po') throw new Error(positionals[0] ? `cannot explain "${positionals[0]}": only pods are scheduled` : 'what to explain? (pod NAME or -f SNAPSHOT)');
      if (!positionals[1]) throw new Error('pod name required');
      req = scheduler.ExplainRequest.fromPartial({ podRef: { namespace: (values.namespace as string) ?? 'default', name: positionals[1] }, profile: (values.profile as string) ?? '' });
    }
  } catch (err) {
    io.stderr(`error: ${(err as Error).message}\n`);
    return 1;
  }
  const target = (values['scheduler-endpoint'] as string | undefined) ?? io.env.BERTH_SCHEDULER_ENDPOINT ?? defaultSocket('scheduler', io.env);
  const client = createClient(scheduler.SchedulerClient, { target, defaultDeadlineMs: 30_000 });
  try {
    const res = await new Promise<scheduler.ExplainResponse>((resolve, reject) => client.explain(req, (e: ServiceError | null, r: scheduler.ExplainResponse) => (e ? reject(e) : resolve(r))));
    io.stdout(formatExplain(res));
    return res.selectedNode ? 0 : 1;
  } catch (err) {
    const e = err as ServiceError;
    io.stderr(`error: ${e.details || e.message} (scheduler at ${target})\n`);
    return 1;
  } finally {
    client.close();
  }
}
