// The real clients behind the seams: the generated RuntimeService/ImageService clients of
// runtime-shim and the NetworkService client of cni-manager (createClient of @berth/common), and
// the small adapters the pod worker uses on top of them — image presence/pull per the
// ImageService, and exec (probes, hooks) through ExecSync.
import { cni, runtime } from '@berth/api';
import { createClient } from '@berth/common';
import type { ImageAccess } from './images';
import { networkSeam } from './network';
import type { ContainerExec, ExecResult } from './probes/prober';
import { runtimeSeam } from './runtime-view';
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
  const net = createClient(cni.NetworkServiceClient, { target: e.cniEndpoint });
  return {
    runtime: runtimeSeam(rt),
    images: imagesSeam(img),
    network: networkSeam(net),
    runtimeRaw: rt,
    close: () => {
      rt.close();
      img.close();
      net.close();
    },
  };
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
