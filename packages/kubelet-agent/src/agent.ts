// The node agent put together: the Store (node registration, lease, node status, the informer of
// this node's pods, status writes, events), static pod sources with their mirror pods, the
// runtime's event stream as the PLEG, the probe manager, the pod workers driving PodSyncer, and
// container GC and hard eviction. Everything it talks to is behind a seam; this file only wires
// and runs loops.
import * as path from 'node:path';
import { core, runtime } from '@berth/api';
import { kindInfo, Quantity, wrap, type Informer, type StoreClient } from '@berth/apimachinery';
import type { Registry } from 'prom-client';
import { CrashLoopBackoff } from './backoff';
import { cgroupRootPrefix, CgroupV1Manager, CgroupV2Manager, detectCgroupDriver, type CgroupManager } from './cgroups/manager';
import { qosCgroupPlans } from './cgroups/plan';
import { realClock, type Clock, type Timer } from './clock';
import { imageAccess, runtimeExec, type ServiceClients } from './clients';
import { EventRecorder, podRef } from './events';
import { readSignals } from './eviction';
import { EvictionManager } from './eviction-manager';
import { containersToRemove, type ImageGcPolicy } from './gc';
import { ImageGc } from './image-gc';
import { NodeLease } from './node-lease';
import { podCidrConflict } from './node';
import { NodeStatusReporter } from './node-status';
import { PodSyncer, type PodLifecycleStore } from './pod-sync';
import { ProbeManager, ResultChannel, type ProbeUpdate } from './probes/manager';
import { listDeadContainers, NODE_NAME_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL } from './runtime-view';
import type { ConfigSource, EventSink, PodStatusStore } from './seams';
import { StartupMetrics } from './startup-trace';
import { StatusManager } from './status/manager';
import { isKind, StoreSeams } from './store-adapter';
import { CONFIG_MIRROR_ANNOTATION, CONFIG_SOURCE_ANNOTATION, PodConfig } from './sync/pod-config';
import { mirrorPod, StaticPodDirSource, StaticPodHttpSource } from './sync/static-pods';
import { SyncLoop, type RuntimeEvent, type SyncWork } from './sync/sync-loop';
import { nativeMounter, type Mounter } from './volumes';
import type { DnsDefaults } from './runtime-config';

type Log = (level: 'info' | 'warn', obj: object, msg: string) => void;

/** Grace period for the containers of a pod known only from the runtime (the kubelet's minimum). */
const ORPHAN_GRACE_SECONDS = 2;

export interface NodeAgentOptions {
  node: core.Node;
  stateDir: string;
  clients: ServiceClients;
  store?: StoreClient;
  clock?: Clock;
  /** cgroup filesystem root (/sys/fs/cgroup) and the parent of kubepods under it. */
  cgroupRoot: string;
  cgroupParent: string[];
  /** false: leave pod cgroups to the runtime (tests on machines without the controllers). */
  manageCgroups?: boolean;
  staticPodPath?: string;
  manifestUrl?: string;
  syncFrequencyMs?: number;
  maxParallel?: number;
  evictionHard?: Record<string, string>;
  imageGc?: ImageGcPolicy;
  dns?: DnsDefaults;
  metrics?: Registry;
  mounter?: Mounter;
  log?: Log;
}

const POD = kindInfo('Pod')!;

/** A Store that is not there: static pods still run, their status stays local. */
class NoStore implements PodStatusStore, ConfigSource, EventSink {
  async getPod(): Promise<core.Pod | undefined> { return undefined; }
  async updatePodStatus(p: core.Pod): Promise<core.Pod> { return p; }
  async getConfigMap(): Promise<core.ConfigMap | undefined> { return undefined; }
  async getSecret(): Promise<core.Secret | undefined> { return undefined; }
  async create(e: core.Event): Promise<core.Event> { return e; }
  async update(e: core.Event): Promise<core.Event> { return e; }
}

export class NodeAgent {
  readonly clock: Clock;
  readonly nodeName: string;
  readonly config = new PodConfig();
  readonly probes: ProbeManager;
  readonly status: StatusManager;
  readonly recorder: EventRecorder;
  readonly syncer: PodSyncer;
  readonly loop: SyncLoop;
  readonly seams?: StoreSeams;
  private readonly pleg = new ResultChannel<RuntimeEvent>();
  /** Probe results on their way to the sync loop, after their Unhealthy events. */
  private readonly probeResults = new ResultChannel<ProbeUpdate>();
  private informer?: Informer;
  private lease?: NodeLease;
  private nodeStatus?: NodeStatusReporter;
  private statics: { stop(): void; start(): void }[] = [];
  private events?: { cancel(): void };
  private gcTimer?: Timer;
  private evictionTimer?: Timer;
  private stopped = false;
  private started = false;
  private readonly log: Log;
  private readonly hostIPs: string[];
  /** Why the agent cannot run pods now (shown by Healthz and the node's Ready condition). */
  plegError?: string;
  private runtimeError?: string;
  private retryTimer?: Timer;

  constructor(private readonly o: NodeAgentOptions) {
    this.clock = o.clock ?? realClock;
    this.log = o.log ?? (() => undefined);
    this.nodeName = o.node.metadata!.name;
    this.hostIPs = o.node.status!.addresses.filter((a) => a.type === 'InternalIP').map((a) => a.address);
    if (o.store) this.seams = new StoreSeams(o.store);
    const none = new NoStore();
    const rt = o.clients.runtime;
    const exec = runtimeExec(rt);
    this.probes = new ProbeManager({ clock: this.clock, exec });
    this.status = new StatusManager({ clock: this.clock, store: this.seams ?? none, batchMs: 5, concurrency: 16, onError: (pod, e) => { if (!isKind(e, 'NotFound') && !isKind(e, 'PermissionDenied')) this.log('warn', { pod, err: (e as Error).message }, 'pod status not written'); } });
    this.recorder = new EventRecorder({ clock: this.clock, sink: this.seams ?? none, host: this.nodeName, onError: (e) => this.log('warn', { err: (e as Error).message }, 'event not written') });
    const alloc = o.node.status!.allocatable;
    const cap = o.node.status!.capacity;
    let cgroups: CgroupManager | undefined;
    if (o.manageCgroups !== false) {
      try {
        cgroups = detectCgroupDriver(o.cgroupRoot) === 'v2' ? new CgroupV2Manager(o.cgroupRoot, o.cgroupParent) : new CgroupV1Manager(o.cgroupRoot, o.cgroupParent);
        for (const q of qosCgroupPlans([], { milliCpu: Quantity.parse(alloc.cpu ?? '1').milli(), memoryBytes: Quantity.parse(alloc.memory ?? '1Gi').value() })) cgroups.ensure(q.path, q.resources);
      } catch (e) {
        this.log('warn', { err: (e as Error).message }, 'pod cgroups are left to the runtime');
        cgroups = undefined;
      }
    }
    const store: PodLifecycleStore | undefined = o.store && {
      deletePod: async (namespace, name, uid) => {
        try {
          await o.store!.delete({ resource: 'pods', namespace, name, gracePeriodSeconds: 0, preconditions: { uid } });
        } catch (e) {
          if (!isKind(e, 'NotFound') && (e as { code?: number }).code !== 9) throw e;
        }
      },
      annotatePod: async (namespace, name, uid, key, value) => {
        for (let i = 0; i < 5; i++) {
          const cur = await this.seams!.getPod(namespace, name);
          if (!cur || cur.metadata?.uid !== uid || cur.metadata.deletionTimestamp) return;
          try {
            await o.store!.update(wrap(POD, { ...cur, metadata: { ...cur.metadata, annotations: { ...cur.metadata.annotations, [key]: value } } }));
            return;
          } catch (e) {
            if (!isKind(e, 'Conflict') && (e as { code?: number }).code !== 10) throw e;
          }
        }
      },
    };
    this.syncer = new PodSyncer({
      clock: this.clock,
      inSource: (uid) => this.config.get(uid) !== undefined,
      nodeName: this.nodeName,
      rootDir: o.stateDir,
      runtime: rt,
      images: imageAccess(o.clients.images),
      network: o.clients.network,
      exec,
      configs: this.seams ?? none,
      status: this.status,
      probes: this.probes,
      recorder: this.recorder,
      backoff: new CrashLoopBackoff(this.clock),
      mounter: o.mounter ?? nativeMounter(),
      store,
      cgroups,
      // The runtime names cgroups from the machine's cgroupfs root: prefix a per-node root.
      cgroupParent: [...cgroupRootPrefix(o.cgroupRoot), ...o.cgroupParent],
      nodeAllocatable: alloc,
      memoryCapacityBytes: Quantity.parse(cap.memory ?? '1Gi').value(),
      hostIPs: this.hostIPs,
      dns: o.dns,
      metrics: o.metrics ? new StartupMetrics(o.metrics) : undefined,
      log: this.log,
    });
    this.loop = new SyncLoop({
      clock: this.clock,
      config: this.config,
      syncPod: (w) => this.syncPod(w),
      runtimeEvents: this.pleg,
      probeUpdates: this.probeResults,
      syncFrequencyMs: o.syncFrequencyMs ?? 60_000,
      maxParallel: o.maxParallel ?? 32,
      onError: (uid, e) => this.log('warn', { pod: uid, err: (e as Error).message }, 'pod sync failed'),
    });
  }

  /** Probe failures become Unhealthy events on the pod (as the kubelet's prober records them). */
  private async relayProbes(): Promise<void> {
    const KIND = { liveness: 'Liveness', readiness: 'Readiness', startup: 'Startup' } as const;
    for await (const u of this.probes.updates) {
      const pod = this.config.get(u.podUid);
      if (pod && u.result === 'failure') {
        const init = pod.spec?.initContainers.some((c) => c.name === u.container);
        this.recorder.event(podRef(pod, `spec.${init ? 'initContainers' : 'containers'}{${u.container}}`), 'Warning', 'Unhealthy', `${KIND[u.kind]} probe failed: ${u.output}`.trim());
      }
      this.probeResults.push(u);
    }
    this.probeResults.close();
  }

  private async syncPod(w: SyncWork): Promise<{ requeueAfterMs?: number } | void> {
    const ann = w.pod.metadata?.annotations ?? {};
    // A mirror pod in the Store only shows a static pod: the static source runs it.
    if (ann[CONFIG_MIRROR_ANNOTATION]) return;
    const isStatic = ann[CONFIG_SOURCE_ANNOTATION] === 'file' || ann[CONFIG_SOURCE_ANNOTATION] === 'http';
    if (isStatic && this.seams) {
      const m = w.pod.metadata!;
      if (w.deleted) await this.seams.deleteMirrorPod(m.namespace || 'default', m.name).catch((e) => this.log('warn', { err: (e as Error).message }, 'mirror pod not removed'));
      else await this.seams.syncMirrorPod(w.pod, mirrorPod(w.pod)).catch((e) => this.log('warn', { err: (e as Error).message }, 'mirror pod not written'));
    }
    if (!isStatic) this.status.observe(w.pod);
    return this.syncer.sync(w);
  }

  /** Registers the node, starts the loops; resolves once the first list of pods is in. */
  async start(): Promise<void> {
    const o = this.o;
    this.runPleg();
    void this.relayProbes();
    if (this.seams) {
      await this.registerNode();
      this.lease = new NodeLease({ clock: this.clock, store: this.seams, nodeName: this.nodeName, onError: (e) => this.log('warn', { err: (e as Error).message }, 'lease not renewed') });
      this.lease.start();
      this.nodeStatus = new NodeStatusReporter({
        clock: this.clock, writer: this.seams, nodeName: this.nodeName,
        signals: () => readSignals(o.stateDir, o.cgroupRoot),
        evictionHard: o.evictionHard ?? {},
        notReady: () => this.runtimeError ?? this.plegError,
        onEvent: (type, reason, message) => this.recorder.event(core.ObjectReference.fromPartial({ kind: 'Node', name: this.nodeName, uid: this.nodeName }), type, reason, message),
        onError: (e) => this.log('warn', { err: (e as Error).message }, 'node status not written'),
      });
      this.nodeStatus.start();
    }
    const problem = (p: { source: string; message: string }) => this.log('warn', p, 'static pod manifest problem');
    if (o.staticPodPath) this.statics.push(new StaticPodDirSource({ clock: this.clock, config: this.config, nodeName: this.nodeName, onProblem: problem }, o.staticPodPath));
    if (o.manifestUrl) this.statics.push(new StaticPodHttpSource({ clock: this.clock, config: this.config, nodeName: this.nodeName, onProblem: problem }, o.manifestUrl));
    for (const s of this.statics) s.start();
    // Pods seen in the Store feed the status manager's view first, so a restarted agent does
    // not rewrite (or regress) statuses it wrote before.
    // A status another writer changed under the agent (Ready=False from the node lifecycle
    // controller while this node was not heard) is put right when the informer sees it.
    if (this.seams) this.informer = await this.seams.watchNodePods(this.nodeName, this.config, (p) => { if (this.status.reconcile(p)) this.log('info', { pod: `${p.metadata!.namespace}/${p.metadata!.name}` }, 'pod status in the Store differs from the node\'s view: posted again'); });
    for (const p of this.config.all()) if (p.status) this.status.observe(p);
    await this.cleanOrphansUntilReachable();
    this.loop.start();
    this.started = true;
    this.scheduleGc();
    this.scheduleEviction();
  }

  private async registerNode(): Promise<void> {
    for (let delay = 200; !this.stopped; delay = Math.min(delay * 2, 10_000)) {
      try {
        const saved = await this.seams!.registerNode(this.o.node);
        this.log('info', { node: this.nodeName, podCIDR: saved.spec?.podCIDR || undefined }, 'node registered');
        const conflict = podCidrConflict(this.o.node, saved);
        if (conflict) this.log('warn', { node: this.nodeName, podCidrFlag: this.o.node.spec?.podCIDR, podCIDR: saved.spec?.podCIDR }, conflict);
        return;
      } catch (e) {
        this.log('warn', { err: (e as Error).message }, 'node not registered yet, retrying');
        await this.clock.sleep(delay);
      }
    }
  }

  /** Orphan cleanup doubles as the first contact with the runtime: retried until it answers. */
  private async cleanOrphansUntilReachable(): Promise<void> {
    try {
      await this.cleanOrphans();
      this.runtimeError = undefined;
    } catch (e) {
      this.runtimeError = `runtime unreachable: ${(e as Error).message}`;
      this.log('warn', { err: (e as Error).message }, 'runtime not reachable yet, retrying');
      if (!this.stopped) this.retryTimer = this.clock.setTimeout(() => void this.cleanOrphansUntilReachable(), 2000);
    }
  }

  /** Sandboxes of pods this node no longer has (deleted while the agent was down) are torn down. */
  private async cleanOrphans(): Promise<void> {
    const known = new Set(this.config.all().map((p) => p.metadata!.uid));
    const { items } = await this.o.clients.runtime.listPodSandbox(runtime.ListPodSandboxRequest.fromPartial({}));
    const orphans = new Map<string, runtime.PodSandbox>();
    for (const s of items) {
      // Only this node's sandboxes: a runtime shared with another agent keeps that agent's pods.
      if (s.labels[NODE_NAME_LABEL] !== this.nodeName) continue;
      const uid = s.labels[POD_UID_LABEL];
      if (uid && !known.has(uid)) orphans.set(uid, s);
    }
    for (const [uid, s] of orphans) {
      this.log('info', { pod: uid }, 'removing the sandbox of a pod this node no longer runs');
      // Its spec is gone with it: as the kubelet does for a pod it only knows from the runtime,
      // its containers get the minimum grace period (2 s), not the 30 s default of a spec.
      const pod = core.Pod.fromPartial({ metadata: { uid, name: s.labels[POD_NAME_LABEL] ?? s.metadata?.name ?? uid, namespace: s.labels[POD_NAMESPACE_LABEL] ?? 'default', deletionGracePeriodSeconds: ORPHAN_GRACE_SECONDS } });
      await this.syncer.sync({ pod, reason: 'DELETE', deleted: true }).catch((e) => this.log('warn', { pod: uid, err: (e as Error).message }, 'orphan not removed'));
    }
  }

  /** The PLEG: the runtime's container events, mapped to pods, reconnecting when the stream ends. */
  private runPleg(): void {
    const EXIT = new Set([runtime.ContainerEventType.CONTAINER_EVENT_TYPE_STOPPED, runtime.ContainerEventType.CONTAINER_EVENT_TYPE_OOM]);
    const connect = (delay: number): void => {
      if (this.stopped) return;
      const stream = this.o.clients.runtimeRaw.events(runtime.EventsRequest.fromPartial({}));
      this.events = stream;
      stream.on('data', (e: runtime.ContainerEvent) => {
        delay = 100;
        this.plegError = undefined;
        const uid = this.syncer.podOfContainer(e.containerId, e.podSandboxId);
        if (!uid) return;
        const type = EXIT.has(e.eventType) ? 'exited' : e.eventType === runtime.ContainerEventType.CONTAINER_EVENT_TYPE_STARTED ? 'started' : e.eventType === runtime.ContainerEventType.CONTAINER_EVENT_TYPE_DELETED ? 'deleted' : 'created';
        // Only exits change what a worker must do; starts and creations are its own doing.
        if (type === 'exited') this.pleg.push({ podUid: uid, containerId: e.containerId, type });
      });
      stream.on('error', (err: Error & { code?: number }) => {
        if (this.stopped || err.code === 1) return;
        this.plegError = `runtime events: ${err.message}`;
        this.clock.setTimeout(() => connect(Math.min(delay * 2, 5000)), delay);
      });
      stream.on('end', () => {
        if (!this.stopped) this.clock.setTimeout(() => connect(Math.min(delay * 2, 5000)), delay);
      });
    };
    connect(100);
  }

  /** Hard eviction thresholds, checked every 10 s: one victim per round. */
  private scheduleEviction(): void {
    const hard = this.o.evictionHard ?? {};
    if (!Object.keys(hard).length) return;
    const o = this.o;
    const mgr = new EvictionManager({
      signals: () => readSignals(o.stateDir, o.cgroupRoot),
      evictionHard: hard,
      pods: () => this.listPods(),
      memoryCgroupDir: (p) => path.join(o.cgroupRoot, 'memory', ...o.cgroupParent, ...p),
      evict: async (pod, _reason, message) => {
        this.log('warn', { pod: `${pod.metadata!.namespace}/${pod.metadata!.name}`, message }, 'evicting pod');
        await this.syncer.evict(pod, message);
      },
    });
    const run = async () => {
      try {
        await mgr.synchronize();
      } catch (e) {
        this.log('warn', { err: (e as Error).message }, 'eviction round failed');
      }
      if (!this.stopped) this.evictionTimer = this.clock.setTimeout(() => void run(), 10_000);
    };
    this.evictionTimer = this.clock.setTimeout(() => void run(), 10_000);
  }

  private scheduleGc(): void {
    const images = new ImageGc({ clock: this.clock, images: this.o.clients.images, runtime: this.o.clients.runtime, policy: this.o.imageGc });
    let round = 0;
    const run = async () => {
      try {
        // Dead instances of the pods this node runs (a deleted pod's containers go with its
        // sandbox); never another agent's, should a runtime be shared.
        const live = new Set(this.loop.running().map((p) => p.metadata!.uid));
        const dead = (await listDeadContainers(this.o.clients.runtime)).filter((c) => live.has(c.podUid));
        for (const c of containersToRemove(dead, () => true, this.clock.now(), { minAgeMs: 60_000 })) await this.o.clients.runtime.removeContainer({ containerId: c.id });
      } catch (e) {
        this.log('warn', { err: (e as Error).message }, 'container GC failed');
      }
      // Images every 5 minutes (the kubelet's period), after the containers that may free them.
      if (round++ % 5 === 0) {
        try {
          const plan = await images.run();
          if (plan.removed.length || plan.bytesToFree > plan.freed) this.log(plan.bytesToFree > plan.freed ? 'warn' : 'info', { usagePercent: plan.usagePercent, removed: plan.removed, bytesToFree: plan.bytesToFree, freed: plan.freed }, 'image GC');
        } catch (e) {
          this.log('warn', { err: (e as Error).message }, 'image GC failed');
        }
      }
      if (!this.stopped) this.gcTimer = this.clock.setTimeout(() => void run(), 60_000);
    };
    this.gcTimer = this.clock.setTimeout(() => void run(), 60_000);
  }

  /** Healthz: the sync loop and the PLEG. */
  syncHealth(): string {
    if (!this.started) return 'not running: starting (waiting for the Store and the first list of pods)';
    if (this.runtimeError) return `not running: ${this.runtimeError}`;
    if (this.plegError) return `not running: ${this.plegError}`;
    return 'ok';
  }

  /** The pods this node runs, with the status the agent last computed. */
  listPods(): core.Pod[] {
    return this.loop.running().filter((p) => !p.metadata?.annotations?.[CONFIG_MIRROR_ANNOTATION]).map((p) => ({ ...p, status: this.status.current(p.metadata!.uid) ?? p.status }));
  }

  findPod(namespace: string, name: string): core.Pod | undefined {
    return this.listPods().find((p) => (p.metadata!.namespace || 'default') === namespace && p.metadata!.name === name);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.loop.stop();
    this.events?.cancel();
    this.gcTimer?.cancel();
    this.evictionTimer?.cancel();
    this.retryTimer?.cancel();
    for (const s of this.statics) s.stop();
    this.lease?.stop();
    this.nodeStatus?.stop();
    this.informer?.stop();
    this.probes.close();
    await this.status.flush().catch(() => undefined);
    this.status.close();
    await this.recorder.flush();
    this.pleg.close();
    this.config.updates.close();
  }
}
