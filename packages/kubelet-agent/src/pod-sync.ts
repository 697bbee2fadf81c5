// The pod worker's sync: one call moves one pod a step towards its spec, from what the runtime
// shows now (so a restarted agent adopts what runs instead of starting it again):
//   QoS cgroup → volumes → RunPodSandbox → SetUpPod (netns of the sandbox, bandwidth) → image per
//   pull policy → init containers one by one → app containers (env, mounts, resources, security)
//   → postStart; restarts by policy under the crash-loop back-off; liveness kills; the status
//   (conditions, container statuses, IPs, phase) to the status manager; and, on delete, preStop,
//   the grace period, StopContainer, TearDownPod, StopPodSandbox/RemovePodSandbox, then the pod
//   object is removed from the Store once everything is gone.
// Everything outside the agent is reached through the seams, so this file is tested both against
// an in-memory runtime (pure logic) and the real runtime-shim/cni-manager/Store.
import { cni, core, runtime } from '@berth/api';
import { admitPod } from './admission';
import type { CrashLoopBackoff } from './backoff';
import type { CgroupManager } from './cgroups/manager';
import { podCgroupPlan } from './cgroups/plan';
import type { Clock } from './clock';
import { ContainerConfigError, expandCommand, resolveEnv } from './env';
import { podRef, type EventRecorder } from './events';
import { ImagePullError, ImagePuller, type ImageAccess } from './images';
import { gracePeriodSeconds, runHandler, stopContainer } from './lifecycle';
import { podIPs, setUpRequest, tearDownRequest } from './network';
import { computePodActions, restartPolicyOf, type ObservedContainer, type ObservedPod } from './pod-actions';
import type { ProbeManager } from './probes/manager';
import type { ContainerExec } from './probes/prober';
import { containerConfig, sandboxConfig, type DnsDefaults } from './runtime-config';
import { observedFromStatus, POD_UID_LABEL } from './runtime-view';
import type { ConfigSource, PodNetwork, PodRuntime } from './seams';
import { computePodStatus, type ContainerView } from './status/compute';
import type { StatusManager } from './status/manager';
import { StartupTrace, STARTUP_TRACE_ANNOTATION, type StartupMetrics } from './startup-trace';
import type { SyncResult, SyncWork } from './sync/sync-loop';
import { cleanupVolumes, prepareVolumes, VolumeError, type Mounter, type PreparedVolume } from './volumes';

/** Store writes the worker needs beyond status: the final removal and the trace annotation. */
export interface PodLifecycleStore {
  /** Removes the pod object (grace 0) if it still has this uid. */
  deletePod(namespace: string, name: string, uid: string): Promise<void>;
  annotatePod(namespace: string, name: string, uid: string, key: string, value: string): Promise<void>;
}

export interface PodSyncerOptions {
  clock: Clock;
  nodeName: string;
  /** The agent's state dir: pods/<uid>/volumes, logs/pods/... */
  rootDir: string;
  runtime: PodRuntime;
  images: ImageAccess;
  network: PodNetwork;
  exec: ContainerExec;
  configs: ConfigSource;
  status: StatusManager;
  probes: ProbeManager;
  recorder: EventRecorder;
  backoff: CrashLoopBackoff;
  mounter: Mounter;
  store?: PodLifecycleStore;
  /** Pod cgroups are made through this manager (its parent keeps two agents apart); undefined: the runtime makes them. */
  cgroups?: CgroupManager;
  /** cgroup_parent prefix handed to the runtime, e.g. ['berth', 'node-a']. */
  cgroupParent: string[];
  nodeAllocatable: Record<string, string>;
  memoryCapacityBytes: bigint;
  hostIPs: string[];
  dns?: DnsDefaults;
  metrics?: StartupMetrics;
  log?: (level: 'info' | 'warn', obj: object, msg: string) => void;
  /**
   * Whether a pod is still in its source (the Store, a static manifest). One removed there no
   * longer counts at admission while its teardown still runs (the kubelet's active pods): the
   * scheduler stopped counting it when it saw the delete, and may have bound a new pod in its
   * place already. Default: every pod the worker holds counts.
   */
  inSource?: (uid: string) => boolean;
}

interface PodState {
  pod: core.Pod;
  /** Reached Succeeded/Failed: no longer counts against the node's resources. */
  finished?: boolean;
  sandboxId?: string;
  netnsPath?: string;
  podIPs: string[];
  volumes?: PreparedVolume[];
  /** When the configMap/secret/downwardAPI contents were last written (ms). */
  volumesAt?: number;
  /** Why a container is not running when the worker knows better than ContainerCreating. */
  waiting: Map<string, { reason: string; message: string }>;
  imageIDs: Map<string, string>;
  trace: StartupTrace;
  traceDone: boolean;
  acceptedAt: number;
  /** A pod-level failure that stops the pod before its containers (bad volume, bad DNS...). */
  blocked?: { reason: string; message: string };
  /** Ended by the node, not by its containers (eviction). */
  terminal?: { phase: 'Failed'; reason: string; message: string };
}

interface Observed {
  pod: ObservedPod;
  sandboxes: runtime.PodSandbox[];
  byName: Map<string, { current: ObservedContainer; previous?: ObservedContainer }>;
}

const SANDBOX_READY = runtime.PodSandboxState.POD_SANDBOX_STATE_READY;
const grpcCode = (e: unknown): number | undefined => (e as { code?: number } | null)?.code;

export class PodSyncer {
  private readonly pods = new Map<string, PodState>();
  /** container id → pod uid, for the PLEG (runtime events name containers only). */
  private readonly containerPods = new Map<string, string>();
  private readonly sandboxPods = new Map<string, string>();
  private readonly puller: ImagePuller;

  constructor(private readonly o: PodSyncerOptions) {
    this.puller = new ImagePuller(o.images, o.clock);
  }

  /** The pod a runtime container belongs to, from what the worker made or adopted. */
  podOfContainer(containerId: string, sandboxId = ''): string | undefined {
    return this.containerPods.get(containerId) ?? this.sandboxPods.get(sandboxId);
  }

  /** IPs of a pod the worker runs (for ListPods / the probes). */
  podIPsOf(uid: string): string[] {
    return this.pods.get(uid)?.podIPs ?? [];
  }

  private state(pod: core.Pod): PodState {
    const uid = pod.metadata!.uid;
    let st = this.pods.get(uid);
    if (!st) {
      const created = Date.parse(pod.metadata?.creationTimestamp ?? '');
      const now = this.o.clock.now();
      st = { pod, podIPs: [], waiting: new Map(), imageIDs: new Map(), trace: new StartupTrace(this.o.clock, Number.isFinite(created) ? Math.min(created, now) : now), traceDone: false, acceptedAt: now };
      this.pods.set(uid, st);
    }
    return st;
  }

  private event(pod: core.Pod, type: 'Normal' | 'Warning', reason: string, message: string, fieldPath = ''): void {
    try {
      this.o.recorder.event(podRef(pod, fieldPath), type, reason, message);
    } catch (e) {
      this.o.log?.('warn', { err: (e as Error).message }, 'event not recorded');
    }
  }

  /** Pods admitted on this node that still hold their resources. */
  private admitted(): core.Pod[] {
    const inSource = this.o.inSource ?? (() => true);
    return [...this.pods.values()].filter((s) => !s.finished && !s.terminal && inSource(s.pod.metadata!.uid)).map((s) => s.pod);
  }

  /** The SyncLoop's syncPod. */
  async sync(work: SyncWork): Promise<SyncResult | void> {
    const pod = work.pod;
    if (work.deleted || pod.metadata?.deletionTimestamp) {
      await this.terminate(pod, work.deleted);
      return;
    }
    const fresh = !this.pods.has(pod.metadata!.uid);
    // Admission, once per pod: one already running here (an agent restart) was admitted before.
    const rejection = fresh && !['Running', 'Succeeded', 'Failed'].includes(pod.status?.phase ?? '') ? admitPod(pod, this.admitted(), this.o.nodeAllocatable) : undefined;
    const st = this.state(pod);
    st.pod = pod;
    if (rejection) {
      st.terminal = { phase: 'Failed', ...rejection };
      st.finished = true;
      this.event(pod, 'Warning', rejection.reason, rejection.message);
      this.o.log?.('warn', { pod: `${pod.metadata!.namespace || 'default'}/${pod.metadata!.name}`, reason: rejection.reason, message: rejection.message }, 'pod rejected at admission');
      this.writeStatus(pod, st, { sandboxes: [], byName: new Map(), pod: { containers: [] } });
      return;
    }
    // Admission: from the loop seeing the pod to its worker taking it up (queue + node checks).
    if (fresh && work.queuedAt !== undefined) st.trace.add('admission', this.o.clock.now() - work.queuedAt);
    return this.syncRunning(pod);
  }

  /** What the runtime runs for a pod; `sandboxes` when the caller knows them already (one RPC less). */
  private async observe(uid: string, known?: runtime.PodSandbox[]): Promise<Observed> {
    const rt = this.o.runtime;
    const sel = { [POD_UID_LABEL]: uid };
    const sandboxes = known ?? (await rt.listPodSandbox(runtime.ListPodSandboxRequest.fromPartial({ filter: { labelSelector: sel } }))).items.filter((s) => s.labels[POD_UID_LABEL] === uid);
    sandboxes.sort((a, b) => (b.metadata?.attempt ?? 0) - (a.metadata?.attempt ?? 0) || Number(b.createdAtUs) - Number(a.createdAtUs));
    const newest = sandboxes[0];
    for (const s of sandboxes) this.sandboxPods.set(s.id, uid);
    const listed = (await rt.listContainers(runtime.ListContainersRequest.fromPartial({ filter: { labelSelector: sel } }))).containers.filter((c) => c.labels[POD_UID_LABEL] === uid);
    // Per container name only the newest two instances matter (current and last state).
    const groups = new Map<string, runtime.Container[]>();
    for (const c of listed) {
      this.containerPods.set(c.id, uid);
      const name = c.metadata?.name ?? '';
      const g = groups.get(name) ?? [];
      g.push(c);
      groups.set(name, g);
    }
    const byName = new Map<string, { current: ObservedContainer; previous?: ObservedContainer }>();
    await Promise.all([...groups].map(async ([name, g]) => {
      g.sort((a, b) => (b.metadata?.attempt ?? 0) - (a.metadata?.attempt ?? 0) || Number(b.createdAtUs) - Number(a.createdAtUs));
      const st = await Promise.all(g.slice(0, 2).map(async (c) => {
        try {
          return observedFromStatus((await rt.containerStatus({ containerId: c.id, verbose: false })).status!);
        } catch (e) {
          if (grpcCode(e) === 5) return undefined; // removed meanwhile
          throw e;
        }
      }));
      if (st[0]) byName.set(name, { current: st[0], previous: st[1] });
    }));
    return {
      sandboxes,
      byName,
      pod: {
        sandbox: newest ? { id: newest.id, ready: newest.state === SANDBOX_READY, attempt: newest.metadata?.attempt ?? 0 } : undefined,
        containers: [...byName.values()].map((v) => v.current),
      },
    };
  }

  private containerSpec(pod: core.Pod, name: string): { c: core.Container; field: string; init: boolean } {
    const spec = pod.spec ?? core.PodSpec.fromPartial({});
    const i = spec.initContainers.findIndex((c) => c.name === name);
    if (i >= 0) return { c: spec.initContainers[i], field: `spec.initContainers[${i}]`, init: spec.initContainers[i].restartPolicy !== 'Always' };
    const j = spec.containers.findIndex((c) => c.name === name);
    return { c: spec.containers[j], field: `spec.containers[${j}]`, init: false };
  }

  private async syncRunning(pod: core.Pod): Promise<SyncResult | void> {
    const uid = pod.metadata!.uid;
    const st = this.state(pod);
    const o = this.o;
    let obs = await this.observe(uid);
    let requeue: number | undefined;
    const later = (ms: number) => { requeue = requeue === undefined ? ms : Math.min(requeue, ms); };
    // What blocked the last attempt (a sandbox the runtime or network could not make, a volume,
    // a config error) is tried again on every sync: the service that was away may be back.
    st.blocked = undefined;
    // A spec the node cannot run at all fails every sync the same way: report, do not retry hot.
    try {
      restartPolicyOf(pod.spec!);
    } catch (e) {
      st.blocked = { reason: 'CreateContainerConfigError', message: (e as Error).message };
    }

    // A pod that reached Succeeded/Failed never runs again (also after an agent restart): make
    // sure nothing of it runs and keep reporting its final status.
    const phase = st.terminal?.phase ?? o.status.current(uid)?.phase ?? pod.status?.phase;
    if (phase === 'Succeeded' || phase === 'Failed') {
      st.finished = true;
      if (obs.pod.sandbox?.ready || obs.pod.containers.some((c) => c.state === 'running')) {
        await this.killSandboxes(pod, obs, 'Completed');
        obs = await this.observe(uid);
      }
      this.writeStatus(pod, st, obs);
      return;
    }
    const actions = st.blocked ? undefined : computePodActions(pod.spec!, obs.pod, { podUid: uid, backoff: o.backoff, livenessFailed: o.probes.livenessFailed(uid) });
    if (actions) {
      if (actions.killPod && obs.pod.sandbox) await this.killSandboxes(pod, obs, actions.createSandbox ? 'SandboxChanged' : 'Completed');
      if (actions.createSandbox && !actions.done) {
        const first = !obs.pod.sandbox;
        const ok = await this.createSandbox(pod, st, first ? 0 : obs.pod.sandbox!.attempt + 1);
        if (!ok) later(10_000);
        // A pod's first sandbox has no containers yet: no need to ask the runtime again.
        if (ok && first) {
          const made = runtime.PodSandbox.fromPartial({ id: st.sandboxId!, state: SANDBOX_READY, metadata: { name: pod.metadata!.name, uid, namespace: pod.metadata!.namespace, attempt: 0 }, labels: { [POD_UID_LABEL]: uid } });
          obs = { sandboxes: [made], byName: new Map(), pod: { sandbox: { id: made.id, ready: true, attempt: 0 }, containers: [] } };
        }
        else obs = await this.observe(uid);
      } else if (obs.pod.sandbox?.ready) {
        await this.adoptSandbox(pod, st, obs.pod.sandbox.id);
        await this.refreshVolumes(pod, st);
      }

      for (const k of actions.kill) {
        const { c } = this.containerSpec(pod, k.name);
        this.event(pod, 'Normal', 'Killing', k.reason, `spec.containers{${k.name}}`);
        await stopContainer({ podIP: st.podIPs[0] ?? '', containerId: k.id, container: c }, gracePeriodSeconds(pod, { probeOverride: probeGrace(c) }), {
          exec: o.exec, clock: o.clock, stop: async (id, t) => { await o.runtime.stopContainer({ containerId: id, timeout: t }); },
          onHookFailed: (m) => this.event(pod, 'Warning', 'FailedPreStopHook', m, `spec.containers{${k.name}}`),
        });
      }
      if (st.sandboxId) {
        for (const name of actions.start) {
          const r = await this.startContainer(pod, st, name, obs.byName.get(name)?.current);
          if (r === 'retry') later(o.backoff.initialMs);
          // A regular init container runs alone: the next one waits for its exit (PLEG).
          if (r === 'started' && this.containerSpec(pod, name).init) break;
        }
      }
      for (const b of actions.backoff) {
        st.waiting.set(b.name, { reason: 'CrashLoopBackOff', message: b.message });
        this.event(pod, 'Warning', 'BackOff', `Back-off restarting failed container ${b.name} in pod ${pod.metadata!.name}_${pod.metadata!.namespace || 'default'}(${uid})`, `spec.containers{${b.name}}`);
        later(b.remainingMs + 10);
      }
      if (actions.initFailed) this.event(pod, 'Warning', 'Failed', `Init container ${actions.initFailed} failed`);
      if (actions.done) {
        // Nothing will run again: stop what is left (sidecars) and the sandbox, keep the
        // containers for their status and logs until the pod is deleted.
        obs = await this.observe(uid);
        if (obs.pod.sandbox?.ready) await this.killSandboxes(pod, obs, 'Completed');
      }
      // A steady pod (nothing started, killed or made) is already observed as it is; when only
      // containers changed, the sandboxes are known.
      if (actions.killPod || actions.done) obs = await this.observe(uid);
      else if (actions.createSandbox || actions.start.length || actions.kill.length) obs = await this.observe(uid, obs.sandboxes);
    }
    this.writeStatus(pod, st, obs);
    return requeue !== undefined ? { requeueAfterMs: requeue } : undefined;
  }

  /** Cgroup, volumes, sandbox, network. Returns false (with the reason in the status) on failure. */
  private async createSandbox(pod: core.Pod, st: PodState, attempt: number): Promise<boolean> {
    const o = this.o;
    const m = pod.metadata!;
    const spec = pod.spec!;
    try {
      const plan = podCgroupPlan(pod);
      o.cgroups?.ensure(plan.path, plan.resources);
      st.volumesAt = o.clock.now();
      st.volumes = await st.trace.time('volumes', () => prepareVolumes({ rootDir: o.rootDir, pod, configs: o.configs, mounter: o.mounter, nodeAllocatable: o.nodeAllocatable, podIPs: st.podIPs, hostIPs: o.hostIPs, now: () => o.clock.now() }));
      const config = sandboxConfig(pod, { rootDir: o.rootDir, nodeName: o.nodeName, attempt, cgroupParent: [...o.cgroupParent, ...plan.path].join('/'), dns: o.dns ?? {} });
      const { podSandboxId } = await st.trace.time('sandbox', () => o.runtime.runPodSandbox({ config, runtimeHandler: spec.runtimeClassName ?? '' }));
      st.sandboxId = podSandboxId;
      this.sandboxPods.set(podSandboxId, m.uid);
      if (spec.hostNetwork) st.podIPs = [...o.hostIPs];
      else {
        await st.trace.time('network', async () => {
          const status = await o.runtime.podSandboxStatus({ podSandboxId, verbose: false });
          st.netnsPath = status.status?.linux?.namespaces?.paths?.network ?? '';
          if (!st.netnsPath) throw new Error(`sandbox ${podSandboxId} reports no network namespace path`);
          st.podIPs = podIPs(await o.network.setUpPod(setUpRequest(pod, podSandboxId, st.netnsPath)));
        });
      }
      o.probes.addPod(pod, st.podIPs[0] ?? '');
      st.blocked = undefined;
      return true;
    } catch (e) {
      const msg = (e as Error).message;
      if (e instanceof VolumeError) {
        st.blocked = { reason: 'ContainerCreating', message: msg };
        this.event(pod, 'Warning', 'FailedMount', `MountVolume.SetUp failed: ${msg}`);
      } else if (e instanceof ContainerConfigError) {
        st.blocked = { reason: 'CreateContainerConfigError', message: msg };
        this.event(pod, 'Warning', 'Failed', `Error: ${msg}`);
      } else {
        st.blocked = { reason: 'ContainerCreating', message: msg };
        this.event(pod, 'Warning', 'FailedCreatePodSandBox', `Failed to create pod sandbox: ${msg}`);
        o.log?.('warn', { pod: `${m.namespace}/${m.name}`, err: msg }, 'sandbox not created');
      }
      // A half-made sandbox is removed so the next attempt starts clean.
      if (st.sandboxId) {
        const id = st.sandboxId;
        st.sandboxId = undefined;
        if (!spec.hostNetwork) await o.network.tearDownPod(tearDownRequest(pod, id, st.netnsPath ?? '')).catch(() => undefined);
        await o.runtime.removePodSandbox({ podSandboxId: id }).catch(() => undefined);
      }
      return false;
    }
  }

  /**
   * ConfigMap, Secret and downward API volumes follow their sources while the pod runs (at most
   * once a minute, as the kubelet's sync period): new content is swapped in atomically.
   */
  private async refreshVolumes(pod: core.Pod, st: PodState): Promise<void> {
    const o = this.o;
    const now = o.clock.now();
    if (!pod.spec!.volumes.some((v) => v.configMap || v.secret || v.downwardAPI)) return;
    if (st.volumesAt !== undefined && now - st.volumesAt < 60_000) return;
    st.volumesAt = now;
    try {
      st.volumes = await prepareVolumes({ rootDir: o.rootDir, pod, configs: o.configs, mounter: o.mounter, nodeAllocatable: o.nodeAllocatable, podIPs: st.podIPs, hostIPs: o.hostIPs, now: () => now });
    } catch (e) {
      // The running containers keep what they have; the problem is reported, not fatal.
      this.event(pod, 'Warning', 'FailedMount', `MountVolume.SetUp failed: ${(e as Error).message}`);
    }
  }

  /** A sandbox found running (agent restart): learn its id, netns and IPs; finish a half-made network. */
  private async adoptSandbox(pod: core.Pod, st: PodState, id: string): Promise<void> {
    const o = this.o;
    if (st.sandboxId === id && st.podIPs.length) return;
    st.sandboxId = id;
    if (!st.volumes) st.volumes = await prepareVolumes({ rootDir: o.rootDir, pod, configs: o.configs, mounter: o.mounter, nodeAllocatable: o.nodeAllocatable, podIPs: st.podIPs, hostIPs: o.hostIPs, now: () => o.clock.now() });
    if (pod.spec!.hostNetwork) st.podIPs = [...o.hostIPs];
    else {
      const status = await o.runtime.podSandboxStatus({ podSandboxId: id, verbose: false });
      st.netnsPath = status.status?.linux?.namespaces?.paths?.network ?? '';
      try {
        st.podIPs = podIPs(await o.network.podNetworkStatus(cni.PodNetworkStatusRequest.fromPartial({ sandboxId: id })));
      } catch (e) {
        if (grpcCode(e) !== 5) throw e;
        st.podIPs = podIPs(await o.network.setUpPod(setUpRequest(pod, id, st.netnsPath)));
      }
    }
    o.probes.addPod(pod, st.podIPs[0] ?? '');
  }

  /** Image, env, create, start, postStart. */
  private async startContainer(pod: core.Pod, st: PodState, name: string, prev: ObservedContainer | undefined): Promise<'started' | 'waiting' | 'retry'> {
    const o = this.o;
    const { c, field } = this.containerSpec(pod, name);
    const fp = `spec.${field.startsWith('spec.init') ? 'initContainers' : 'containers'}{${name}}`;
    const record = (type: 'Normal' | 'Warning', reason: string, message: string) => this.event(pod, type, reason, message, fp);
    const fail = (reason: string, message: string, event = true): 'retry' => {
      st.waiting.set(name, { reason, message });
      if (event) record('Warning', 'Failed', `Error: ${message}`);
      return 'retry';
    };
    let imageID: string;
    try {
      imageID = await st.trace.time('image', () => this.puller.ensure(pod, c, record));
      st.imageIDs.set(name, imageID);
    } catch (e) {
      if (e instanceof ImagePullError) return fail(e.reason, e.message, false);
      return fail('ErrImagePull', (e as Error).message);
    }
    let env;
    try {
      env = await resolveEnv({ pod, configs: o.configs, podIPs: st.podIPs, hostIPs: o.hostIPs, nodeAllocatable: o.nodeAllocatable }, c, field);
    } catch (e) {
      if (e instanceof ContainerConfigError) return fail('CreateContainerConfigError', e.message);
      throw e;
    }
    const { command, args } = expandCommand(c, env.env);
    const attempt = prev ? prev.attempt + 1 : 0;
    let config: runtime.ContainerConfig;
    try {
      config = containerConfig(pod, c, field, { attempt, env: env.env, command, args, volumes: st.volumes ?? [], imageRef: c.image, memoryCapacityBytes: o.memoryCapacityBytes, podUid: pod.metadata!.uid });
    } catch (e) {
      if (e instanceof ContainerConfigError) return fail('CreateContainerConfigError', e.message);
      throw e;
    }
    let containerId: string;
    try {
      containerId = (await st.trace.time('containerCreate', () => o.runtime.createContainer({ podSandboxId: st.sandboxId!, config, sandboxConfig: undefined }))).containerId;
    } catch (e) {
      return fail('CreateContainerError', (e as Error).message);
    }
    this.containerPods.set(containerId, pod.metadata!.uid);
    record('Normal', 'Created', `Created container ${name}`);
    try {
      await st.trace.time('containerStart', () => o.runtime.startContainer({ containerId }));
    } catch (e) {
      return fail('RunContainerError', (e as Error).message);
    }
    st.waiting.delete(name);
    record('Normal', 'Started', `Started container ${name}`);
    o.probes.setContainerState(pod.metadata!.uid, name, { id: containerId, running: true, startedAt: o.clock.now() });
    const post = c.lifecycle?.postStart;
    if (post) {
      const r = await runHandler(post, { podIP: st.podIPs[0] ?? '', containerId, container: c }, o.exec, o.clock, 30_000, `${field}.lifecycle.postStart`);
      if (!r.ok) {
        record('Warning', 'FailedPostStartHook', r.message);
        record('Normal', 'Killing', `FailedPostStartHook`);
        await o.runtime.stopContainer({ containerId, timeout: gracePeriodSeconds(pod) });
      }
    }
    return 'started';
  }

  /** Stops every container (preStop, grace), the network and the sandboxes of a pod. */
  private async killSandboxes(pod: core.Pod, obs: Observed, why: string): Promise<void> {
    const o = this.o;
    const uid = pod.metadata!.uid;
    const grace = gracePeriodSeconds(pod);
    const st = this.pods.get(uid);
    await Promise.all([...obs.byName.values()].filter((v) => v.current.state === 'running' || v.current.state === 'created').map(async ({ current }) => {
      const { c } = this.containerSpec(pod, current.name);
      if (c) this.event(pod, 'Normal', 'Killing', `Stopping container ${current.name}`, `spec.containers{${current.name}}`);
      const container = c ?? ({ name: current.name } as core.Container);
      await stopContainer({ podIP: st?.podIPs[0] ?? '', containerId: current.id, container }, grace, {
        exec: o.exec, clock: o.clock, stop: async (id, t) => { await o.runtime.stopContainer({ containerId: id, timeout: t }); },
        onHookFailed: (m) => this.event(pod, 'Warning', 'FailedPreStopHook', m, `spec.containers{${current.name}}`),
      });
      o.probes.setContainerState(uid, current.name, { id: current.id, running: false, startedAt: current.startedAt });
    }));
    for (const s of obs.sandboxes) {
      if (s.state !== SANDBOX_READY) continue;
      if (!pod.spec?.hostNetwork) await o.network.tearDownPod(tearDownRequest(pod, s.id, st?.netnsPath ?? ''));
      await o.runtime.stopPodSandbox({ podSandboxId: s.id });
    }
    if (st) {
      st.podIPs = why === 'Completed' ? st.podIPs : [];
      st.sandboxId = undefined;
    }
  }

  private views(pod: core.Pod, st: PodState, obs: Observed): Map<string, ContainerView> {
    const uid = pod.metadata!.uid;
    const out = new Map<string, ContainerView>();
    for (const c of [...pod.spec!.initContainers, ...pod.spec!.containers]) {
      const v = obs.byName.get(c.name);
      if (v) {
        const cur = v.current;
        this.o.probes.setContainerState(uid, c.name, { id: cur.id, running: cur.state === 'running', startedAt: cur.startedAt });
      }
      const waiting = st.blocked ?? st.waiting.get(c.name);
      out.set(c.name, {
        current: v?.current,
        previous: v?.previous,
        waiting: v?.current.state === 'running' ? undefined : waiting,
        image: c.image,
        imageID: st.imageIDs.get(c.name) ?? '',
        ready: this.o.probes.isReady(uid, c.name),
        started: this.o.probes.isStarted(uid, c.name),
      });
    }
    return out;
  }

  private writeStatus(pod: core.Pod, st: PodState, obs: Observed): core.PodStatus {
    const o = this.o;
    const status = computePodStatus({ pod: { ...pod, status: o.status.current(pod.metadata!.uid) ?? pod.status }, containers: this.views(pod, st, obs), now: o.clock.now(), hostIPs: o.hostIPs, podIPs: st.podIPs, startedAt: st.acceptedAt, terminal: st.terminal });
    o.status.setStatus(pod, status);
    if (status.phase === 'Succeeded' || status.phase === 'Failed') st.finished = true;
    this.trace(pod, st, status);
    return status;
  }

  private trace(pod: core.Pod, st: PodState, status: core.PodStatus): void {
    if (st.traceDone) return;
    if (status.phase === 'Running') st.trace.running();
    const ready = status.conditions.some((c) => c.type === 'Ready' && c.status === 'True');
    if (!ready) return;
    st.trace.ready();
    st.traceDone = true;
    if (this.o.metrics) st.trace.observe(this.o.metrics);
    const m = pod.metadata!;
    // The annotation is for people (`berth describe`); losing it to a Store hiccup is fine.
    void this.o.store?.annotatePod(m.namespace || 'default', m.name, m.uid, STARTUP_TRACE_ANNOTATION, st.trace.annotation()).catch((e) => this.o.log?.('warn', { err: (e as Error).message }, 'startup trace not written'));
  }

  /**
   * Node-pressure eviction: the pod is killed (no grace beyond its own), its phase becomes Failed
   * with reason Evicted, and it is never restarted; the object stays for its owner to see.
   */
  async evict(pod: core.Pod, message: string): Promise<void> {
    const st = this.state(pod);
    st.terminal = { phase: 'Failed', reason: 'Evicted', message };
    this.event(pod, 'Warning', 'Evicted', message);
    this.o.probes.removePod(pod.metadata!.uid);
    let obs = await this.observe(pod.metadata!.uid);
    await this.killSandboxes(pod, obs, 'Completed');
    obs = await this.observe(pod.metadata!.uid);
    this.writeStatus(pod, st, obs);
    await this.o.status.flush();
  }

  /** Graceful termination, final status, cleanup, and the removal of the pod object. */
  private async terminate(pod: core.Pod, deleted: boolean): Promise<void> {
    const o = this.o;
    const m = pod.metadata!;
    const uid = m.uid;
    o.probes.removePod(uid);
    let obs = await this.observe(uid);
    const running = [...obs.byName.values()].some((v) => v.current.state === 'running' || v.current.state === 'created');
    if (running || obs.sandboxes.some((s) => s.state === SANDBOX_READY)) await this.killSandboxes(pod, obs, 'Deleted');
    if (!deleted && pod.spec) {
      obs = await this.observe(uid);
      const st = this.state(pod);
      st.waiting.clear();
      this.writeStatus(pod, st, obs);
      await o.status.flush();
    }
    for (const s of obs.sandboxes) await o.runtime.removePodSandbox({ podSandboxId: s.id });
    // Containers outside any sandbox the runtime knows (left by a crash) go too.
    for (const v of obs.byName.values()) for (const c of [v.current, v.previous]) if (c) await o.runtime.removeContainer({ containerId: c.id }).catch((e) => { if (grpcCode(e) !== 5) throw e; });
    try {
      cleanupVolumes(o.rootDir, uid, o.mounter);
    } catch (e) {
      o.log?.('warn', { pod: `${m.namespace}/${m.name}`, err: (e as Error).message }, 'volumes not cleaned up');
    }
    if (o.cgroups && pod.spec) {
      try {
        o.cgroups.remove(podCgroupPlan(pod).path);
      } catch (e) {
        o.log?.('warn', { pod: `${m.namespace}/${m.name}`, err: (e as Error).message }, 'pod cgroup not removed');
      }
    }
    for (const [id, p] of this.containerPods) if (p === uid) this.containerPods.delete(id);
    for (const [id, p] of this.sandboxPods) if (p === uid) this.sandboxPods.delete(id);
    for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) o.backoff.forget(`${uid}/${c.name}`);
    this.pods.delete(uid);
    if (!deleted && m.deletionTimestamp) await o.store?.deletePod(m.namespace || 'default', m.name, uid);
    if (deleted) o.status.forget(uid);
  }
}

function probeGrace(c: core.Container | undefined): number | undefined {
  const g = c?.livenessProbe?.terminationGracePeriodSeconds;
  return g !== undefined && g !== null ? Number(g) : undefined;
}
