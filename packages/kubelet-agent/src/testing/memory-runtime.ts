// An in-memory runtime + image service + network for pure-logic tests of the pod worker: it keeps
// sandboxes and containers as records with the runtime's states and labels, records every call,
// and lets a test make a container exit (or fail) at a chosen moment. The same worker is tested
// against the real runtime-shim/cni-manager in pod-sync.integration.test.ts.
import { cni, runtime } from '@berth/api';
import type { PodImages, PodNetwork, PodRuntime } from '../seams';

interface Sandbox {
  id: string;
  config: runtime.PodSandboxConfig;
  state: runtime.PodSandboxState;
  createdAtUs: number;
}

interface Ctr {
  id: string;
  sandboxId: string;
  config: runtime.ContainerConfig;
  state: runtime.ContainerState;
  createdAtUs: number;
  startedAtUs: number;
  finishedAtUs: number;
  exitCode: number;
  reason: string;
}

const S = runtime.ContainerState;

export class MemoryRuntime implements PodRuntime, PodImages, PodNetwork {
  readonly calls: string[] = [];
  readonly sandboxes = new Map<string, Sandbox>();
  readonly containers = new Map<string, Ctr>();
  readonly images = new Map<string, string>();
  readonly setUps: cni.SetUpPodRequest[] = [];
  readonly stops: { name: string; timeout: number }[] = [];
  /** Exec results by command[0]; default exit 0. */
  execResult: (name: string, cmd: string[]) => { exitCode: number; stdout?: string } = () => ({ exitCode: 0 });
  /** Called when a container is started: return an exit code to make it exit at once. */
  onStart: (name: string, attempt: number) => number | undefined = () => undefined;
  pullable = new Set<string>();
  private seq = 0;
  /** Times come from the test's clock, as the agent's back-off compares them with it. */
  constructor(private readonly clock: { now(): number } = Date) {}
  private nowUs = () => this.clock.now() * 1000;

  private nameOf(id: string): string {
    return this.containers.get(id)?.config.metadata?.name ?? '?';
  }

  exit(name: string, code: number, reason = ''): void {
    for (const c of this.containers.values()) {
      if (c.config.metadata?.name === name && c.state === S.CONTAINER_STATE_RUNNING) {
        c.state = S.CONTAINER_STATE_EXITED;
        c.exitCode = code;
        c.reason = reason || (code === 0 ? 'Completed' : 'Error');
        c.finishedAtUs = this.nowUs();
      }
    }
  }

  running(): string[] {
    return [...this.containers.values()].filter((c) => c.state === S.CONTAINER_STATE_RUNNING).map((c) => `${c.config.metadata!.name}#${c.config.metadata!.attempt}`).sort();
  }

  async runPodSandbox(req: runtime.RunPodSandboxRequest) {
    const id = `sb${++this.seq}`;
    this.calls.push(`runPodSandbox ${req.config!.metadata!.name}#${req.config!.metadata!.attempt}`);
    this.sandboxes.set(id, { id, config: req.config!, state: runtime.PodSandboxState.POD_SANDBOX_STATE_READY, createdAtUs: this.nowUs() + this.seq });
    return { podSandboxId: id };
  }
  async stopPodSandbox(req: runtime.StopPodSandboxRequest) {
    this.calls.push(`stopPodSandbox ${req.podSandboxId}`);
    const s = this.sandboxes.get(req.podSandboxId);
    if (s) s.state = runtime.PodSandboxState.POD_SANDBOX_STATE_NOTREADY;
    for (const c of this.containers.values()) if (c.sandboxId === req.podSandboxId && c.state === S.CONTAINER_STATE_RUNNING) this.exitById(c.id, 137);
    return {};
  }
  async removePodSandbox(req: runtime.RemovePodSandboxRequest) {
    this.calls.push(`removePodSandbox ${req.podSandboxId}`);
    this.sandboxes.delete(req.podSandboxId);
    for (const [id, c] of this.containers) if (c.sandboxId === req.podSandboxId) this.containers.delete(id);
    return {};
  }
  async podSandboxStatus(req: runtime.PodSandboxStatusRequest) {
    const s = this.sandboxes.get(req.podSandboxId);
    if (!s) throw Object.assign(new Error(`sandbox ${req.podSandboxId} not found`), { code: 5 });
    return runtime.PodSandboxStatusResponse.fromPartial({ status: { id: s.id, state: s.state, metadata: s.config.metadata, labels: s.config.labels, linux: { namespaces: { paths: { network: `/run/netns/${s.id}` } } } } });
  }
  async listPodSandbox(req: runtime.ListPodSandboxRequest) {
    const sel = req.filter?.labelSelector ?? {};
    return runtime.ListPodSandboxResponse.fromPartial({
      items: [...this.sandboxes.values()].filter((s) => Object.entries(sel).every(([k, v]) => s.config.labels[k] === v)).map((s) => ({ id: s.id, metadata: s.config.metadata, state: s.state, createdAtUs: s.createdAtUs, labels: s.config.labels })),
    });
  }
  async createContainer(req: runtime.CreateContainerRequest) {
    const s = this.sandboxes.get(req.podSandboxId);
    if (!s || s.state !== runtime.PodSandboxState.POD_SANDBOX_STATE_READY) throw Object.assign(new Error(`sandbox ${req.podSandboxId} is not ready`), { code: 9 });
    if (![...this.images.keys()].includes(req.config!.image!.image)) throw Object.assign(new Error(`image ${req.config!.image!.image} not found`), { code: 5 });
    const id = `c${++this.seq}`;
    this.calls.push(`createContainer ${req.config!.metadata!.name}#${req.config!.metadata!.attempt}`);
    this.containers.set(id, { id, sandboxId: req.podSandboxId, config: req.config!, state: S.CONTAINER_STATE_CREATED, createdAtUs: this.nowUs() + this.seq, startedAtUs: 0, finishedAtUs: 0, exitCode: 0, reason: '' });
    return { containerId: id };
  }
  async startContainer(req: runtime.StartContainerRequest) {
    const c = this.containers.get(req.containerId)!;
    this.calls.push(`startContainer ${this.nameOf(req.containerId)}`);
    c.state = S.CONTAINER_STATE_RUNNING;
    c.startedAtUs = this.nowUs();
    const code = this.onStart(c.config.metadata!.name, c.config.metadata!.attempt);
    if (code !== undefined) this.exitById(c.id, code);
    return {};
  }
  private exitById(id: string, code: number): void {
    const c = this.containers.get(id)!;
    c.state = S.CONTAINER_STATE_EXITED;
    c.exitCode = code;
    c.reason = code === 0 ? 'Completed' : 'Error';
    c.finishedAtUs = this.nowUs();
  }
  async stopContainer(req: runtime.StopContainerRequest) {
    const c = this.containers.get(req.containerId);
    this.calls.push(`stopContainer ${this.nameOf(req.containerId)} ${req.timeout}`);
    this.stops.push({ name: this.nameOf(req.containerId), timeout: Number(req.timeout) });
    if (c && c.state === S.CONTAINER_STATE_RUNNING) this.exitById(c.id, 143);
    return {};
  }
  async removeContainer(req: runtime.RemoveContainerRequest) {
    this.containers.delete(req.containerId);
    return {};
  }
  async listContainers(req: runtime.ListContainersRequest) {
    const sel = req.filter?.labelSelector ?? {};
    return runtime.ListContainersResponse.fromPartial({
      containers: [...this.containers.values()]
        .filter((c) => Object.entries(sel).every(([k, v]) => c.config.labels[k] === v) && (!req.filter?.state || c.state === req.filter.state))
        .map((c) => ({ id: c.id, podSandboxId: c.sandboxId, metadata: c.config.metadata, state: c.state, createdAtUs: c.createdAtUs, labels: c.config.labels, image: c.config.image, imageId: this.images.get(c.config.image!.image) ?? '' })),
    });
  }
  async containerStatus(req: runtime.ContainerStatusRequest) {
    const c = this.containers.get(req.containerId);
    if (!c) throw Object.assign(new Error(`container ${req.containerId} not found`), { code: 5 });
    return runtime.ContainerStatusResponse.fromPartial({ status: { id: c.id, metadata: c.config.metadata, state: c.state, createdAtUs: c.createdAtUs, startedAtUs: c.startedAtUs, finishedAtUs: c.finishedAtUs, exitCode: c.exitCode, reason: c.reason, labels: c.config.labels } });
  }
  async execSync(req: runtime.ExecSyncRequest) {
    const name = this.nameOf(req.containerId);
    this.calls.push(`exec ${name} ${req.cmd.join(' ')}`);
    const r = this.execResult(name, req.cmd);
    return runtime.ExecSyncResponse.fromPartial({ exitCode: r.exitCode, stdout: Buffer.from(r.stdout ?? '') });
  }
  async imageStatus(req: runtime.ImageStatusRequest) {
    const id = this.images.get(req.image!.image);
    return runtime.ImageStatusResponse.fromPartial({ image: id ? { id } : undefined });
  }
  readonly imageSizes = new Map<string, number>();
  async listImages() {
    return runtime.ListImagesResponse.fromPartial({ images: [...this.images].map(([ref, id]) => ({ id, repoTags: [ref], size: this.imageSizes.get(id) ?? 0 })) });
  }
  async removeImage(req: runtime.RemoveImageRequest) {
    this.calls.push(`removeImage ${req.image!.image}`);
    for (const [ref, id] of this.images) if (id === req.image!.image || ref === req.image!.image) this.images.delete(ref);
    return {};
  }
  imageFsUsed = 0;
  async imageFsInfo() {
    return runtime.ImageFsInfoResponse.fromPartial({ imageFilesystems: [{ fsId: { mountpoint: '/var/lib/images' }, usedBytes: this.imageFsUsed }] });
  }
  async *pullImage(req: runtime.PullImageRequest): AsyncIterable<runtime.PullImageProgress> {
    const ref = req.image!.image;
    this.calls.push(`pull ${ref}`);
    if (!this.pullable.has(ref)) throw Object.assign(new Error(`${ref}: manifest unknown`), { code: 5 });
    const id = `sha256:${Buffer.from(ref).toString('hex').padEnd(64, '0').slice(0, 64)}`;
    this.images.set(ref, id);
    yield runtime.PullImageProgress.fromPartial({ done: { imageRef: ref, imageId: id } });
  }
  async setUpPod(req: cni.SetUpPodRequest) {
    this.calls.push(`setUpPod ${req.podName} ${req.netnsPath}`);
    this.setUps.push(req);
    return cni.SetUpPodResponse.fromPartial({ ips: [`10.88.0.${this.setUps.length + 1}/24`] });
  }
  async tearDownPod(req: cni.TearDownPodRequest) {
    this.calls.push(`tearDownPod ${req.podName}`);
    return {};
  }
  async podNetworkStatus(req: cni.PodNetworkStatusRequest) {
    const i = this.setUps.findIndex((s) => s.sandboxId === req.sandboxId);
    if (i < 0) throw Object.assign(new Error('not found'), { code: 5 });
    return cni.PodNetworkStatusResponse.fromPartial({ ips: [`10.88.0.${i + 2}/24`] });
  }
}
