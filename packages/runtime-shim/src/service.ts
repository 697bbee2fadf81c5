// berth-runtime-shim: the CRI-like RuntimeService and ImageService on a unix socket (0600).
// A thin façade: requests are checked and handed to the SandboxManager / ContainerManager /
// exec / logs code; domain errors become gRPC status here (in unary/serverStream) and nowhere else.
import * as path from 'node:path';

import type { ServerDuplexStream } from '@grpc/grpc-js';
import { runtime } from '@berth/api';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  serverStream,
  toServiceError,
  unary,
  withUnimplemented,
  z,
  type ServiceSpec,
} from '@berth/common';
import { containerSyscalls } from '@berth/native';

import { ContainerManager, type ContainerEventInfo, type ContainerRecord } from './containers';
import { DEFAULT_CONTAINERS_PER_MONITOR } from './monitor/hosts';
import { StatsSampler } from './cri/stats';
import { ExecSession, execSync } from './exec/exec';
import { imageService, openImageStore } from './images';
import { readLog } from './logs/reader';
import { ConfigError } from './oci/config';
import { SandboxManager, type SandboxRecord } from './sandbox/sandbox';
import { RuntimeError } from './state';

const VERSION = '0.1.0';

function domainError(err: unknown): unknown {
  if (err instanceof ConfigError) return new InvalidArgumentError(undefined, err.message);
  if (err instanceof RuntimeError) {
    if (/already exists/.test(err.message)) return new AlreadyExistsError(err.message);
    if (/does not exist/.test(err.message)) return new NotFoundError(err.message);
    return new FailedPreconditionError(err.message);
  }
  return err;
}

function guarded<Req, Res>(fn: (req: Req) => Promise<Res> | Res) {
  return unary<Req, Res>(async (req) => {
    try {
      return await fn(req);
    } catch (err) {
      throw domainError(err);
    }
  });
}

const STATE: Record<ContainerRecord['phase'], runtime.ContainerState> = {
  created: runtime.ContainerState.CONTAINER_STATE_CREATED,
  running: runtime.ContainerState.CONTAINER_STATE_RUNNING,
  exited: runtime.ContainerState.CONTAINER_STATE_EXITED,
};

const EVENT: Record<ContainerEventInfo['kind'], runtime.ContainerEventType> = {
  created: runtime.ContainerEventType.CONTAINER_EVENT_TYPE_CREATED,
  started: runtime.ContainerEventType.CONTAINER_EVENT_TYPE_STARTED,
  stopped: runtime.ContainerEventType.CONTAINER_EVENT_TYPE_STOPPED,
  deleted: runtime.ContainerEventType.CONTAINER_EVENT_TYPE_DELETED,
  oom: runtime.ContainerEventType.CONTAINER_EVENT_TYPE_OOM,
};

function statusOf(r: ContainerRecord): runtime.ContainerStatus {
  return runtime.ContainerStatus.fromPartial({
    id: r.id,
    metadata: { name: r.name, attempt: r.attempt },
    state: STATE[r.phase],
    createdAtUs: r.createdAtUs,
    startedAtUs: r.startedAtUs,
    finishedAtUs: r.finishedAtUs,
    exitCode: r.exitCode,
    image: r.image,
    imageRef: r.imageRef,
    imageId: r.imageId,
    reason: r.reason,
    message: r.message,
    labels: r.labels,
    annotations: r.annotations,
    mounts: r.mounts.map((m) => runtime.Mount.fromJSON(m)),
    logPath: r.logPath,
    resources: { linux: runtime.LinuxContainerResources.fromJSON(r.resources) },
  });
}

const SANDBOX_STATE: Record<SandboxRecord['state'], runtime.PodSandboxState> = {
  creating: runtime.PodSandboxState.POD_SANDBOX_STATE_NOTREADY,
  ready: runtime.PodSandboxState.POD_SANDBOX_STATE_READY,
  notready: runtime.PodSandboxState.POD_SANDBOX_STATE_NOTREADY,
};

const NS_MODE: Record<SandboxRecord['modes']['network'], runtime.NamespaceMode> = {
  pod: runtime.NamespaceMode.NAMESPACE_MODE_POD,
  node: runtime.NamespaceMode.NAMESPACE_MODE_NODE,
  container: runtime.NamespaceMode.NAMESPACE_MODE_CONTAINER,
};

function sandboxMeta(s: SandboxRecord): runtime.PodSandboxMetadata {
  return { name: s.name, uid: s.uid, namespace: s.namespace, attempt: s.attempt };
}

export interface RuntimeDeps {
  sandboxes: SandboxManager;
  containers: ContainerManager;
}

/** Stops every container of the sandbox (at once, as StopPodSandbox does), then the sandbox. */
async function stopSandbox(d: RuntimeDeps, id: string): Promise<void> {
  await Promise.all(d.containers.list().filter((c) => c.sandboxId === id).map((c) => d.containers.stop(c.id, 0)));
  d.sandboxes.stop(id);
}

async function removeSandbox(d: RuntimeDeps, id: string): Promise<void> {
  await Promise.all(d.containers.list().filter((c) => c.sandboxId === id).map((c) => d.containers.remove(c.id)));
  await d.sandboxes.remove(id);
}

function execHandler(mgr: ContainerManager) {
  return (call: ServerDuplexStream<runtime.ExecRequest, runtime.ExecResponse>): void => {
    let session: ExecSession | undefined;
    let starting = false;
    let finished = false;
    const pending: runtime.ExecRequest[] = [];
    const fail = (err: unknown): void => {
      if (finished) return;
      finished = true;
      session?.kill();
      call.emit('error', toServiceError(domainError(err)));
    };
    const apply = (f: runtime.ExecRequest): void => {
      const s = session!;
      if (f.stdin !== undefined) s.write(Buffer.from(f.stdin));
      else if (f.stdinClose !== undefined) s.closeStdin();
      else if (f.signal !== undefined) s.signal(f.signal);
      else if (f.resize !== undefined) s.resize(f.resize.width, f.resize.height);
      else if (f.start !== undefined) throw new InvalidArgumentError('start', 'only the first frame may be start');
    };
    call.on('cancelled', () => { finished = true; session?.kill(); });
    call.on('data', (f: runtime.ExecRequest) => {
      try {
        if (session !== undefined) return apply(f);
        if (starting) return void pending.push(f);
        const st = f.start;
        if (st === undefined) throw new InvalidArgumentError('start', 'the first frame must be start');
        starting = true;
        ExecSession.start(mgr, st.containerId, { cmd: st.cmd, env: st.env, workingDir: st.workingDir, user: st.user, stdin: st.stdin, tty: st.tty, ...(st.terminalSize !== undefined ? { size: st.terminalSize } : {}) }, {
          stdout: (d) => { if (!finished) call.write(runtime.ExecResponse.fromPartial({ stdout: d })); },
          stderr: (d) => { if (!finished) call.write(runtime.ExecResponse.fromPartial({ stderr: d })); },
        }).then((s) => {
          session = s;
          for (const p of pending.splice(0)) apply(p);
          void s.done.then((e) => {
            if (finished) return;
            finished = true;
            call.write(runtime.ExecResponse.fromPartial({ exit: { exitCode: e.exitCode, reason: e.reason } }));
            call.end();
          });
        }, fail);
      } catch (err) {
        fail(err);
      }
    });
    call.on('end', () => {
      // The client half-closed: its stdin is done too.
      if (session !== undefined) session.closeStdin();
    });
    call.on('error', () => session?.kill());
  };
}

function runtimeService(d: RuntimeDeps) {
  const { sandboxes, containers: mgr } = d;
  const stats = new StatsSampler(mgr);
  return withUnimplemented(runtime.RuntimeServiceService, 'issue #8', {
    version: guarded((): runtime.VersionResponse => ({ version: VERSION, runtimeName: 'berth', runtimeVersion: VERSION, runtimeApiVersion: 'v1' })),

    runPodSandbox: guarded(async (req: runtime.RunPodSandboxRequest) => {
      const s = await sandboxes.run(req.config, req.runtimeHandler);
      return runtime.RunPodSandboxResponse.fromPartial({ podSandboxId: s.id });
    }),
    stopPodSandbox: guarded(async (req: runtime.StopPodSandboxRequest) => {
      if (sandboxes.find(req.podSandboxId) === undefined) throw new NotFoundError(`pod sandbox ${req.podSandboxId} not found`);
      await stopSandbox(d, req.podSandboxId);
      return {};
    }),
    removePodSandbox: guarded(async (req: runtime.RemovePodSandboxRequest) => {
      await removeSandbox(d, req.podSandboxId);
      return {};
    }),
    podSandboxStatus: guarded((req: runtime.PodSandboxStatusRequest) => {
      const s = sandboxes.get(req.podSandboxId);
      return runtime.PodSandboxStatusResponse.fromPartial({
        status: {
          id: s.id, metadata: sandboxMeta(s), state: SANDBOX_STATE[s.state], createdAtUs: s.createdAtUs,
          linux: {
            namespaces: {
              options: { network: NS_MODE[s.modes.network], pid: NS_MODE[s.modes.pid], ipc: NS_MODE[s.modes.ipc] },
              paths: { network: s.ns.net ?? '', ipc: s.ns.ipc ?? '', uts: s.ns.uts ?? '', pid: s.ns.pid ?? '' },
            },
          },
          labels: s.labels, annotations: s.annotations, runtimeHandler: s.runtimeHandler,
        },
        info: req.verbose ? { cgroupParent: JSON.stringify(s.cgroupParent), dir: JSON.stringify(s.dir), hostname: JSON.stringify(s.hostname) } : {},
      });
    }),
    listPodSandbox: guarded((req: runtime.ListPodSandboxRequest) => {
      const f = req.filter;
      const items = sandboxes.list().filter((s) =>
        (f === undefined || f.id === '' || s.id === f.id || s.id.startsWith(f.id)) &&
        (f === undefined || f.state === runtime.PodSandboxState.POD_SANDBOX_STATE_UNSPECIFIED || SANDBOX_STATE[s.state] === f.state) &&
        Object.entries(f?.labelSelector ?? {}).every(([k, v]) => s.labels[k] === v),
      );
      return runtime.ListPodSandboxResponse.fromPartial({
        items: items.map((s) => ({ id: s.id, metadata: sandboxMeta(s), state: SANDBOX_STATE[s.state], createdAtUs: s.createdAtUs, labels: s.labels, annotations: s.annotations, runtimeHandler: s.runtimeHandler })),
      });
    }),

    createContainer: guarded(async (req: runtime.CreateContainerRequest) => {
      if (req.config === undefined) throw new InvalidArgumentError('config', 'is required');
      const rec = await mgr.create({ sandboxId: req.podSandboxId, config: req.config });
      return runtime.CreateContainerResponse.fromPartial({ containerId: rec.id });
    }),
    startContainer: guarded(async (req: runtime.StartContainerRequest) => {
      await mgr.start(req.containerId);
      return {};
    }),
    stopContainer: guarded(async (req: runtime.StopContainerRequest) => {
      if (req.timeout < 0) throw new InvalidArgumentError('timeout', 'must not be negative');
      await mgr.stop(req.containerId, Number(req.timeout));
      return {};
    }),
    removeContainer: guarded(async (req: runtime.RemoveContainerRequest) => {
      await mgr.remove(req.containerId);
      stats.forget(req.containerId);
      return {};
    }),
    waitContainer: guarded(async (req: runtime.WaitContainerRequest) => {
      const r = mgr.get(req.containerId);
      await r.exited;
      return runtime.WaitContainerResponse.fromPartial({ exitCode: r.exitCode, finishedAtUs: r.finishedAtUs, reason: r.reason, message: r.message });
    }),
    runContainer: serverStream(async function* (req: runtime.RunContainerRequest) {
      if (req.config === undefined) throw new InvalidArgumentError('config', 'is required');
      let run: Awaited<ReturnType<ContainerManager['run']>>;
      try {
        run = await mgr.run({ sandboxId: req.podSandboxId, config: req.config }, req.remove);
      } catch (err) {
        throw domainError(err);
      }
      const { rec } = run;
      const containerId = rec.id;
      yield runtime.RunContainerResponse.fromPartial({ phase: runtime.RunContainerPhase.RUN_CONTAINER_PHASE_CREATED, containerId });
      let removed: boolean;
      try {
        await run.started;
        yield runtime.RunContainerResponse.fromPartial({ phase: runtime.RunContainerPhase.RUN_CONTAINER_PHASE_STARTED, containerId, startedAtUs: rec.startedAtUs });
        removed = await run.removed;
      } catch (err) {
        throw domainError(err);
      }
      if (removed) stats.forget(containerId);
      yield runtime.RunContainerResponse.fromPartial({
        phase: runtime.RunContainerPhase.RUN_CONTAINER_PHASE_EXITED, containerId, startedAtUs: rec.startedAtUs, removed,
        exit: { exitCode: rec.exitCode, finishedAtUs: rec.finishedAtUs, reason: rec.reason, message: rec.message },
      });
    }),
    containerStatus: guarded((req: runtime.ContainerStatusRequest) => {
      const r = mgr.get(req.containerId);
      return runtime.ContainerStatusResponse.fromPartial({
        status: statusOf(r),
        info: req.verbose ? { pid: JSON.stringify(r.phase === 'running' ? safePid(mgr, r.id) : 0), monitorPid: JSON.stringify(r.monitorPid), sandboxId: JSON.stringify(r.sandboxId), rootfs: JSON.stringify(r.rootfs) } : {},
      });
    }),
    listContainers: guarded((req: runtime.ListContainersRequest) => {
      const f = req.filter;
      const containers = mgr.list().filter((r) =>
        (f === undefined || f.id === '' || r.id === f.id || r.id.startsWith(f.id)) &&
        (f === undefined || f.state === runtime.ContainerState.CONTAINER_STATE_UNSPECIFIED || STATE[r.phase] === f.state) &&
        (f === undefined || f.podSandboxId === '' || r.sandboxId === f.podSandboxId) &&
        Object.entries(f?.labelSelector ?? {}).every(([k, v]) => r.labels[k] === v),
      );
      return runtime.ListContainersResponse.fromPartial({
        containers: containers.map((r) => ({ id: r.id, podSandboxId: r.sandboxId, metadata: { name: r.name, attempt: r.attempt }, image: r.image, imageRef: r.imageRef, imageId: r.imageId, state: STATE[r.phase], createdAtUs: r.createdAtUs, labels: r.labels, annotations: r.annotations })),
      });
    }),
    containerStats: guarded((req: runtime.ContainerStatsRequest) => runtime.ContainerStatsResponse.fromPartial({ stats: stats.sample(mgr.get(req.containerId)) })),
    listContainerStats: guarded((req: runtime.ListContainerStatsRequest) => {
      const f = req.filter;
      const list = mgr.list().filter((r) =>
        (f === undefined || f.id === '' || r.id === f.id) &&
        (f === undefined || f.podSandboxId === '' || r.sandboxId === f.podSandboxId) &&
        Object.entries(f?.labelSelector ?? {}).every(([k, v]) => r.labels[k] === v),
      );
      return runtime.ListContainerStatsResponse.fromPartial({ stats: list.map((r) => stats.sample(r)) });
    }),
    updateContainerResources: guarded(async (req: runtime.UpdateContainerResourcesRequest) => {
      await mgr.updateResources(req.containerId, req.linux);
      return {};
    }),
    reopenContainerLog: guarded((req: runtime.ReopenContainerLogRequest) => {
      mgr.reopenLog(req.containerId);
      return {};
    }),

    execSync: guarded(async (req: runtime.ExecSyncRequest) => {
      if (req.timeout < 0) throw new InvalidArgumentError('timeout', 'must not be negative');
      const r = await execSync(mgr, req.containerId, req.cmd, Number(req.timeout));
      return runtime.ExecSyncResponse.fromPartial(r);
    }),
    exec: execHandler(mgr),
    containerLogs: serverStream(async function* (req: runtime.ContainerLogsRequest, _call, signal) {
      let r: ContainerRecord;
      try {
        r = mgr.get(req.containerId);
      } catch (err) {
        throw domainError(err);
      }
      if (req.previous) {
        const prev = mgr.list().find((c) => c.sandboxId === r.sandboxId && c.name === r.name && c.attempt === r.attempt - 1);
        if (prev === undefined) throw new NotFoundError(`container "${r.name}" has no previous attempt`);
        r = prev;
      }
      if (r.logPath === '') throw new FailedPreconditionError(`container ${r.id} has no log path`);
      if (req.tailLines !== undefined && req.tailLines < 0) throw new InvalidArgumentError('tail_lines', 'must not be negative');
      const rec = r;
      for await (const e of readLog(r.logPath, {
        tailLines: req.tailLines, sinceUs: req.sinceTimeUs, limitBytes: req.limitBytes, follow: req.follow, signal,
        writerDone: () => rec.phase === 'exited' || !mgr.list().includes(rec),
      })) {
        yield runtime.LogFrame.fromPartial({ timestampUs: e.timestampUs, stream: e.stream, partial: e.partial, log: e.log });
      }
    }),
    events: serverStream(async function* (req: runtime.EventsRequest, _call, signal) {
      const queue: ContainerEventInfo[] = [];
      let wake: (() => void) | undefined;
      const on = (e: ContainerEventInfo): void => {
        if (req.podSandboxId !== '' && e.sandboxId !== req.podSandboxId) return;
        queue.push(e);
        wake?.();
      };
      mgr.events.on('event', on);
      signal.addEventListener('abort', () => wake?.(), { once: true });
      try {
        while (!signal.aborted) {
          if (queue.length === 0) await new Promise<void>((r) => (wake = r));
          wake = undefined;
          for (const e of queue.splice(0)) {
            yield runtime.ContainerEvent.fromPartial({ containerId: e.id, podSandboxId: e.sandboxId, eventType: EVENT[e.kind], createdAtUs: e.atUs, exitCode: e.exitCode });
          }
        }
      } finally {
        mgr.events.off('event', on);
      }
    }),
    status: guarded((req: runtime.StatusRequest) => runtime.StatusResponse.fromPartial({
      status: {
        conditions: [
          { type: 'RuntimeReady', status: true },
          // Pod networking is cni-manager's; the runtime only makes the namespaces it configures.
          { type: 'NetworkReady', status: true, message: 'pod networks are set up by cni-manager in the sandbox network namespace' },
        ],
      },
      info: req.verbose ? { cgroupDriver: JSON.stringify('cgroupfs'), sandboxes: JSON.stringify(sandboxes.list().length), containers: JSON.stringify(mgr.list().length) } : {},
    })),
  });
}

function safePid(mgr: ContainerManager, id: string): number {
  try {
    return mgr.rt.state(id).pid;
  } catch {
    return 0;
  }
}

const schema = {
  containersPerMonitor: z.number().int().min(1).max(1024).default(DEFAULT_CONTAINERS_PER_MONITOR),
};

export const spec: ServiceSpec<typeof schema> = {
  name: 'runtime-shim',
  options: {
    containersPerMonitor: {
      flag: 'containers-per-monitor', type: 'number',
      description: `containers one monitor process serves (default ${DEFAULT_CONTAINERS_PER_MONITOR}); a monitor that dies loses that many, 1 gives each container its own`,
    },
  },
  schema,
  setup: async (ctx) => {
    // Orphans of our containers (double-forked daemons) are reparented to us and reaped.
    containerSyscalls.setChildSubreaper();
    const images = openImageStore(ctx.config.stateDir);
    const warn = (msg: string): void => ctx.logger.warn(msg);
    const containers = new ContainerManager({ stateDir: ctx.config.stateDir, images, warn, containersPerMonitor: ctx.config.containersPerMonitor });
    const sandboxes = new SandboxManager(path.join(ctx.config.stateDir, 'sandboxes'), warn, containers.rt);
    containers.sandboxes = sandboxes;
    await sandboxes.recover();
    await containers.recover();
    containers.startReaper();
    // The warm cgroups are made before the first request, not on the first create's path.
    await containers.rt.warm();
    return {
      services: [
        { definition: runtime.RuntimeServiceService, implementation: runtimeService({ sandboxes, containers }) },
        { definition: runtime.ImageServiceService, implementation: imageService({ store: images, logger: ctx.logger }) },
      ],
      close: () => containers.close(),
    };
  },
};
