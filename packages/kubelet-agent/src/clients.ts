// The real clients behind the seams: runtime-shim's RuntimeService/ImageService and cni-manager's
// NetworkService. The unary calls of a pod start (sandbox, containers, network, status) go
// through @berth/common's lean node:http2 unary client — grpc-js's client layers cost 0.6-0.9 ms
// more CPU per call here, a dozen calls per pod — and the streams (Events, ContainerLogs, Exec,
// PullImage) through the generated grpc-js clients. Then the small adapters the pod worker uses:
// image presence/pull per the ImageService, and exec (probes, hooks) through ExecSync.
import { cni, runtime } from '@berth/api';
import { createClient, createH2UnaryClient, type UnaryCallOptions } from '@berth/common';
import type { ImageAccess } from './images';
import type { ContainerExec, ExecResult } from './probes/prober';
import { RUNTIME_METHODS } from './runtime-view';
import { promisify, type PodImages, type PodNetwork, type PodRuntime } from './seams';

export interface ServiceClients {
  runtime: PodRuntime;
  images: PodImages;
  network: PodNetwork;
  /** The raw RuntimeService client: streams (Events, ContainerLogs, Exec) and stats. */
  runtimeRaw: runtime.RuntimeServiceClient;
  close(): void;
}

export interface Endpoints {
  runtimeEndpoint: string;
  imageEndpoint?: string;
  cniEndpoint: string;
}

/** Clients for the node-local services (unix sockets: the node's own, mode 0600). */
export function connectServices(e: Endpoints): ServiceClients {
  const rt = createClient(runtime.RuntimeServiceClient, { target: e.runtimeEndpoint });
  const img = createClient(runtime.ImageServiceClient, { target: e.imageEndpoint ?? e.runtimeEndpoint });
  const rtUnary = createH2UnaryClient(runtime.RuntimeServiceService, { target: e.runtimeEndpoint });
  const netUnary = createH2UnaryClient(cni.NetworkServiceService, { target: e.cniEndpoint });
  return {
    runtime: methodsOf<PodRuntime>(rtUnary, RUNTIME_METHODS, {
      // The runtime waits up to `timeout` seconds for these to finish: the call's deadline must
      // outlast it (a 30 s grace period ran into the default 30 s deadline).
      stopContainer: (r) => ({ deadlineMs: (Number((r as runtime.StopContainerRequest).timeout) + 30) * 1000 }),
      execSync: (r) => ({ deadlineMs: (Number((r as runtime.ExecSyncRequest).timeout || 0) + 30) * 1000 }),
    }),
    images: imagesSeam(img),
    network: methodsOf<PodNetwork>(netUnary, ['setUpPod', 'tearDownPod', 'podNetworkStatus']),
    runtimeRaw: rt,
    close: () => {
      rt.close();
      img.close();
      rtUnary.close();
      netUnary.close();
    },
  };
}

/** The named methods of a lean unary client as a seam (each `(req) => Promise<res>`), with per-method call options. */
function methodsOf<T>(client: Record<string, unknown>, methods: readonly (keyof T & string)[], options: Partial<Record<keyof T & string, (req: unknown) => UnaryCallOptions>> = {}): T {
  const out: Record<string, unknown> = {};
  for (const m of methods) {
    const fn = client[m] as ((req: unknown, o?: UnaryCallOptions) => Promise<unknown>) | undefined;
    if (typeof fn !== 'function') throw new TypeError(`client has no method ${m}`);
    const opts = options[m];
    out[m] = opts ? (req: unknown) => fn(req, opts(req)) : (req: unknown) => fn(req);
  }
  return out as T;
}

export function imagesSeam(client: runtime.ImageServiceClient): PodImages {
  const unary = promisify<Omit<PodImages, 'pullImage'>>(client as unknown as Record<string, unknown>, ['imageStatus', 'listImages', 'removeImage', 'imageFsInfo']);
  return { ...unary, pullImage: (req) => client.pullImage(req) as AsyncIterable<runtime.PullImageProgress> };
}

/**
 * Image presence and pulls through the ImageService (what ImagePuller needs). Presence answers
 * are shared for `presentTtlMs` (1 s): when many pods of one image start at once, the runtime is
 * asked once, not once per container.
 */
export function imageAccess(images: PodImages, presentTtlMs = 1000, now: () => number = Date.now): ImageAccess {
  const recent = new Map<string, { at: number; answer: Promise<string | undefined> }>();
  const ask = async (image: string): Promise<string | undefined> => {
    try {
      const r = await images.imageStatus(runtime.ImageStatusRequest.fromPartial({ image: { image } }));
      return r.image?.id || undefined;
    } catch (e) {
      if ((e as { code?: number }).code === 5) return undefined;
      throw e;
    }
  };
  return {
    present(image) {
      const hit = recent.get(image);
      if (hit && now() - hit.at < presentTtlMs) return hit.answer;
      const answer = ask(image);
      recent.set(image, { at: now(), answer });
      // Only a positive answer is shared: a missing image is looked up again (it may be pulled).
      answer.then((id) => { if (!id) recent.delete(image); }, () => recent.delete(image));
      if (recent.size > 256) for (const [k, v] of recent) if (now() - v.at >= presentTtlMs) recent.delete(k);
      return answer;
    },
    async pull(image) {
      let id = '';
      for await (const f of images.pullImage(runtime.PullImageRequest.fromPartial({ image: { image } }))) if (f.done) id = f.done.imageId;
      if (!id) throw new Error(`pull of ${image} ended without an image id`);
      recent.delete(image);
      return id;
    },
  };
}

/** Exec probes and hooks inside the container, through the runtime's ExecSync. */
export function runtimeExec(rt: PodRuntime): ContainerExec {
  return {
    async exec(containerId, cmd, timeoutMs): Promise<ExecResult> {
      try {
        const r = await rt.execSync(runtime.ExecSyncRequest.fromPartial({ containerId, cmd, timeout: Math.max(1, Math.ceil(timeoutMs / 1000)) }));
        return { exitCode: r.exitCode, output: Buffer.concat([Buffer.from(r.stdout), Buffer.from(r.stderr)]).toString('utf8'), timedOut: false };
      } catch (e) {
        // DEADLINE_EXCEEDED: the runtime killed the command at the timeout.
        if ((e as { code?: number }).code === 4) return { exitCode: -1, output: '', timedOut: true };
        throw e;
      }
    },
  };
}
