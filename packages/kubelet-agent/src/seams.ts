// The seams through which the agent talks to the other services. Each is the small slice of a
// service the agent needs, typed with the generated messages of @berth/api, so that wiring the
// real clients later (createClient() of the generated RuntimeService/ImageService/Network
// clients, the Store client of @berth/apimachinery) is a thin promise adapter per method.
import type { cni, core, runtime } from '@berth/api';

/** Pods of this node and their status (Store: Get/UpdateStatus on pods). */
export interface PodStatusStore {
  getPod(namespace: string, name: string): Promise<core.Pod | undefined>;
  /** Writes `pod.status` with `pod.metadata.resourceVersion` as precondition; ConflictError (ABORTED) if stale. */
  updatePodStatus(pod: core.Pod): Promise<core.Pod>;
}

/** What the pod workers need of the Store beyond status. */
export interface PodSource {
  /** Pods bound to `nodeName`, then every change to them (the informer). */
  watchPods(nodeName: string, onEvent: (type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: core.Pod) => void, signal: AbortSignal): Promise<void>;
}

/** ConfigMaps and Secrets for env and volumes (Store: Get). */
export interface ConfigSource {
  getConfigMap(namespace: string, name: string): Promise<core.ConfigMap | undefined>;
  getSecret(namespace: string, name: string): Promise<core.Secret | undefined>;
}

/** Events (Store: Create/Update on events). */
export interface EventSink {
  create(ev: core.Event): Promise<core.Event>;
  /** Updates count/lastTimestamp of an event made earlier (by namespace/name). */
  update(ev: core.Event): Promise<core.Event>;
}

/** The slice of runtime-shim's RuntimeService the agent calls. */
export interface PodRuntime {
  runPodSandbox(req: runtime.RunPodSandboxRequest): Promise<runtime.RunPodSandboxResponse>;
  stopPodSandbox(req: runtime.StopPodSandboxRequest): Promise<runtime.StopPodSandboxResponse>;
  removePodSandbox(req: runtime.RemovePodSandboxRequest): Promise<runtime.RemovePodSandboxResponse>;
  listPodSandbox(req: runtime.ListPodSandboxRequest): Promise<runtime.ListPodSandboxResponse>;
  podSandboxStatus(req: runtime.PodSandboxStatusRequest): Promise<runtime.PodSandboxStatusResponse>;
  createContainer(req: runtime.CreateContainerRequest): Promise<runtime.CreateContainerResponse>;
  startContainer(req: runtime.StartContainerRequest): Promise<runtime.StartContainerResponse>;
  stopContainer(req: runtime.StopContainerRequest): Promise<runtime.StopContainerResponse>;
  removeContainer(req: runtime.RemoveContainerRequest): Promise<runtime.RemoveContainerResponse>;
  listContainers(req: runtime.ListContainersRequest): Promise<runtime.ListContainersResponse>;
  containerStatus(req: runtime.ContainerStatusRequest): Promise<runtime.ContainerStatusResponse>;
  execSync(req: runtime.ExecSyncRequest): Promise<runtime.ExecSyncResponse>;
}

/** The slice of runtime-shim's ImageService the agent calls. */
export interface PodImages {
  imageStatus(req: runtime.ImageStatusRequest): Promise<runtime.ImageStatusResponse>;
  listImages(req: runtime.ListImagesRequest): Promise<runtime.ListImagesResponse>;
  removeImage(req: runtime.RemoveImageRequest): Promise<runtime.RemoveImageResponse>;
  imageFsInfo(req: runtime.ImageFsInfoRequest): Promise<runtime.ImageFsInfoResponse>;
  /** Server stream: progress frames, then one `done` frame with the image id. */
  pullImage(req: runtime.PullImageRequest): AsyncIterable<runtime.PullImageProgress>;
}

/** The slice of cni-manager's NetworkService the agent calls. */
export interface PodNetwork {
  setUpPod(req: cni.SetUpPodRequest): Promise<cni.SetUpPodResponse>;
  tearDownPod(req: cni.TearDownPodRequest): Promise<cni.TearDownPodResponse>;
  podNetworkStatus(req: cni.PodNetworkStatusRequest): Promise<cni.PodNetworkStatusResponse>;
}

type Callback<Res> = (err: Error | null, res: Res) => void;
type UnaryMethod<Req, Res> = (req: Req, cb: Callback<Res>) => unknown;

/**
 * Turns the callback methods of a generated gRPC client into the promise methods of a seam
 * (`promisify(client, ['runPodSandbox', ...])`), so the real client plugs in where tests use
 * a local implementation.
 */
export function promisify<T>(client: Record<string, unknown>, methods: readonly (keyof T & string)[]): T {
  const out: Record<string, unknown> = {};
  for (const m of methods) {
    const fn = client[m] as UnaryMethod<unknown, unknown> | undefined;
    if (typeof fn !== 'function') throw new TypeError(`client has no method ${m}`);
    out[m] = (req: unknown) => new Promise((resolve, reject) => fn.call(client, req, (err, res) => (err ? reject(err) : resolve(res))));
  }
  return out as T;
}
