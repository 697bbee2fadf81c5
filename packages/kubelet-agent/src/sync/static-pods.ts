// Static pods: manifests in a directory or behind an HTTP URL, run by this node without the
// Store. Each gets a stable uid from its content and the node (so an unchanged manifest keeps
// its pod across agent restarts, and a changed one is a new pod), the node name appended to its
// name, and the config annotations the mirror pod in the Store carries.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { core } from '@berth/api';
import { parseManifests } from '@berth/apimachinery';
import type { Clock, Timer } from '../clock';
import { CONFIG_HASH_ANNOTATION, CONFIG_MIRROR_ANNOTATION, CONFIG_SOURCE_ANNOTATION, type PodConfig, type PodSourceName } from './pod-config';

export interface ManifestProblem {
  source: string;
  message: string;
}

/** Turns a manifest's pod into the static pod this node runs. */
export function staticPod(pod: core.Pod, nodeName: string, source: 'file' | 'http', origin: string): core.Pod {
  const p = core.Pod.fromPartial(pod);
  const meta = p.metadata ?? core.ObjectMeta.fromPartial({});
  if (!meta.name) throw new Error(`${origin}: metadata.name: Required value`);
  if (!p.spec) throw new Error(`${origin}: spec: Required value`);
  const hash = crypto.createHash('sha256').update(JSON.stringify(core.Pod.toJSON(pod))).update(`\0${nodeName}\0${source}\0${origin}`).digest('hex');
  meta.namespace ||= 'default';
  meta.name = `${meta.name}-${nodeName}`;
  meta.uid = hash.slice(0, 32);
  meta.annotations = { ...meta.annotations, [CONFIG_SOURCE_ANNOTATION]: source, [CONFIG_HASH_ANNOTATION]: meta.uid };
  p.metadata = meta;
  p.spec.nodeName = nodeName;
  p.spec.restartPolicy ||= 'Always';
  return p;
}

/** The mirror pod reflected into the Store for a static pod (read-only copy for visibility). */
export function mirrorPod(p: core.Pod): core.Pod {
  const m = core.Pod.fromPartial(p);
  m.metadata!.annotations = { ...m.metadata!.annotations, [CONFIG_MIRROR_ANNOTATION]: p.metadata!.uid };
  m.metadata!.uid = '';
  m.metadata!.resourceVersion = '';
  return m;
}

export function parsePods(text: string, nodeName: string, source: 'file' | 'http', origin: string): core.Pod[] {
  const out: core.Pod[] = [];
  for (const obj of parseManifests(text, origin)) {
    if (!obj.pod) throw new Error(`${origin}: kind: only Pod manifests can be static pods`);
    out.push(staticPod(obj.pod, nodeName, source, origin));
  }
  return out;
}

/** Reads every *.yaml/*.yml/*.json in `dir` (dotfiles skipped); bad files are reported, not fatal. */
export function readManifestDir(dir: string, nodeName: string): { pods: core.Pod[]; problems: ManifestProblem[] } {
  const pods: core.Pod[] = [];
  const problems: ManifestProblem[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { pods, problems };
    throw e;
  }
  for (const n of names.sort()) {
    if (n.startsWith('.') || !/\.(ya?ml|json)$/.test(n)) continue;
    const p = path.join(dir, n);
    try {
      const st = fs.statSync(p);
      if (!st.isFile()) continue;
      if (st.size > 1024 * 1024) throw new Error(`${p}: manifest larger than 1 MiB`);
      pods.push(...parsePods(fs.readFileSync(p, 'utf8'), nodeName, 'file', p));
    } catch (e) {
      problems.push({ source: p, message: (e as Error).message });
    }
  }
  return { pods, problems };
}

function fetchText(url: string, timeoutMs: number, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, { headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (b: Buffer) => {
        size += b.length;
        if (size > 1024 * 1024) { req.destroy(new Error(`${url}: manifest larger than 1 MiB`)); return; }
        chunks.push(b);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

export interface StaticSourceOptions {
  clock: Clock;
  config: PodConfig;
  nodeName: string;
  /** How often to look again (kubelet: 20 s). */
  periodMs?: number;
  onProblem?: (p: ManifestProblem) => void;
}

abstract class PeriodicSource {
  private timer?: Timer;
  private stopped = false;
  constructor(protected readonly opts: StaticSourceOptions, private readonly source: PodSourceName) {}

  protected abstract read(): Promise<core.Pod[] | undefined>;

  /** Reads now and pushes the snapshot; keeps the previous set when the read itself failed. */
  async rescan(): Promise<void> {
    const pods = await this.read();
    if (pods) this.opts.config.setSnapshot(this.source, pods);
  }

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      void this.rescan().finally(() => {
        if (!this.stopped) this.timer = this.opts.clock.setTimeout(tick, this.opts.periodMs ?? 20_000);
      });
    };
    tick();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }
}

export class StaticPodDirSource extends PeriodicSource {
  constructor(opts: StaticSourceOptions, readonly dir: string) {
    super(opts, 'file');
  }
  protected async read(): Promise<core.Pod[]> {
    const { pods, problems } = readManifestDir(this.dir, this.opts.nodeName);
    for (const p of problems) this.opts.onProblem?.(p);
    // A file that fails to parse drops its pods only if it was removed; a broken edit keeps
    // nothing of that file (as the kubelet does), the rest of the directory is unaffected.
    return pods;
  }
}

export class StaticPodHttpSource extends PeriodicSource {
  constructor(opts: StaticSourceOptions, readonly url: string, readonly headers: Record<string, string> = {}, readonly timeoutMs = 10_000) {
    super(opts, 'http');
    if (!/^https?:\/\//.test(url)) throw new RangeError(`manifestURL: expected an http:// or https:// URL, got ${JSON.stringify(url)}`);
  }
  protected async read(): Promise<core.Pod[] | undefined> {
    try {
      const r = await fetchText(this.url, this.timeoutMs, this.headers);
      if (r.status !== 200) throw new Error(`${this.url}: HTTP ${r.status}`);
      if (!r.body.trim()) return [];
      return parsePods(r.body, this.opts.nodeName, 'http', this.url);
    } catch (e) {
      this.opts.onProblem?.({ source: this.url, message: (e as Error).message });
      return undefined; // unreachable: keep running what we had
    }
  }
}
