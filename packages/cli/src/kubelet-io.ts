// `berth logs` and `berth exec`: a pod's logs and a command in one of its containers, through the
// Kubelet API of the node the pod runs on (as kubectl reaches kubelets through the API server).
// The kubelet's endpoint comes from --kubelet-endpoint, else from the local cluster that
// `berth up` describes in $BERTH_RUN_DIR/cluster.json (each node's kubelet-agent socket).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { kubelet } from '@berth/api';
import { createClient, runDir } from '@berth/common';

export class KubeletEndpointError extends Error {}

interface ClusterFile {
  nodes?: { name: string; runDir: string; services?: { name: string; socket: string }[] }[];
}

/** The Kubelet API endpoint of `node`: the override, or the node's kubelet-agent in the local cluster. */
export function kubeletEndpointFor(node: string, env: NodeJS.ProcessEnv, override?: string): string {
  if (override) return override;
  const file = path.join(runDir(env), 'cluster.json');
  let info: ClusterFile;
  try {
    info = JSON.parse(fs.readFileSync(file, 'utf8')) as ClusterFile;
  } catch {
    throw new KubeletEndpointError(`no local cluster at ${file} to find the kubelet of node "${node}"; give --kubelet-endpoint unix:///path/kubelet-agent.sock`);
  }
  const n = info.nodes?.find((x) => x.name === node);
  if (n === undefined) throw new KubeletEndpointError(`node "${node}" is not a node of the local cluster (${file}); give --kubelet-endpoint`);
  return n.services?.find((s) => s.name === 'kubelet-agent')?.socket ?? `unix://${path.join(n.runDir, 'kubelet-agent.sock')}`;
}

export interface LogsOptions {
  namespace: string;
  pod: string;
  container: string;
  follow: boolean;
  previous: boolean;
  timestamps: boolean;
  tailLines?: number;
  sinceSeconds?: number;
  limitBytes?: number;
}

export async function streamLogs(endpoint: string, o: LogsOptions, out: (s: Buffer) => void, signal?: AbortSignal): Promise<void> {
  const client = createClient(kubelet.KubeletClient, { target: endpoint });
  try {
    const call = client.containerLogs(kubelet.ContainerLogsRequest.fromPartial({
      namespace: o.namespace, pod: o.pod, container: o.container, follow: o.follow, previous: o.previous, timestamps: o.timestamps,
      ...(o.tailLines !== undefined ? { tailLines: o.tailLines } : {}),
      ...(o.sinceSeconds !== undefined ? { sinceSeconds: o.sinceSeconds } : {}),
      ...(o.limitBytes !== undefined ? { limitBytes: o.limitBytes } : {}),
    }));
    signal?.addEventListener('abort', () => call.cancel(), { once: true });
    await new Promise<void>((resolve, reject) => {
      call.on('data', (c: kubelet.LogChunk) => out(Buffer.from(c.data)));
      call.on('end', resolve);
      call.on('error', (e: Error & { code?: number }) => (signal?.aborted && e.code === 1 ? resolve() : reject(e)));
    });
  } finally {
    client.close();
  }
}

export interface ExecOptions {
  namespace: string;
  pod: string;
  container: string;
  cmd: string[];
  stdin: boolean;
  tty: boolean;
}

export interface ExecIo {
  stdout: (b: Buffer) => void;
  stderr: (b: Buffer) => void;
  stdinStream: () => Readable & { isTTY?: boolean; setRawMode?: (on: boolean) => void };
  terminalSize?: () => { width: number; height: number } | undefined;
}

/** Runs the command; resolves with its exit code. */
export async function execInPod(endpoint: string, o: ExecOptions, io: ExecIo): Promise<number> {
  const client = createClient(kubelet.KubeletClient, { target: endpoint });
  try {
    const call = client.exec();
    return await new Promise<number>((resolve, reject) => {
      let code = 1;
      call.on('data', (f: kubelet.ExecResponse) => {
        if (f.stdout !== undefined) io.stdout(Buffer.from(f.stdout));
        else if (f.stderr !== undefined) io.stderr(Buffer.from(f.stderr));
        else if (f.exit !== undefined) code = f.exit.exitCode;
      });
      call.on('end', () => resolve(code));
      call.on('error', reject);
      const size = o.tty ? io.terminalSize?.() : undefined;
      call.write(kubelet.ExecRequest.fromPartial({ start: { namespace: o.namespace, pod: o.pod, container: o.container, cmd: o.cmd, tty: o.tty, stdin: o.stdin, ...(size !== undefined ? { terminalSize: size } : {}) } }));
      if (!o.stdin) { call.end(); return; }
      const input = io.stdinStream();
      // With -t on a terminal, keys go to the container's terminal as typed (^C included).
      const raw = o.tty && input.isTTY === true && input.setRawMode !== undefined;
      if (raw) input.setRawMode!(true);
      call.on('close', () => { if (raw) input.setRawMode!(false); input.pause(); });
      input.on('data', (d: Buffer | string) => call.write(kubelet.ExecRequest.fromPartial({ stdin: Buffer.from(d) })));
      input.on('end', () => { call.write(kubelet.ExecRequest.fromPartial({ stdinClose: true })); call.end(); });
    });
  } finally {
    client.close();
  }
}
