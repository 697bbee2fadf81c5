// berth-runtime-shim: the CRI-like RuntimeService and ImageService on a unix socket (0600).
// A thin façade: requests are checked and handed to the ContainerManager; domain errors become
// gRPC status here and nowhere else. Containers run from OCI bundles for now (issue #5);
// sandboxes, images, exec, logs and stats arrive with issue #8 and answer UNIMPLEMENTED until then.
import * as path from 'node:path';

import { runtime } from '@berth/api';
import {
  AlreadyExistsError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  serverStream,
  unary,
  UnimplementedError,
  withUnimplemented,
  type ServiceSpec,
} from '@berth/common';
import { containerSyscalls } from '@berth/native';

import { imageService, openImageStore } from './images';
import { ContainerManager, Invalid, NeedsIssue8, NotFound, type ContainerEventInfo, type ContainerRecord } from './containers';
import { ConfigError } from './oci/config';
import { RuntimeError } from './state';

const VERSION = '0.1.0';

function domainError(err: unknown): unknown {
  if (err instanceof NotFound) return new NotFoundError(err.message);
  // The message already starts with the field path.
  if (err instanceof Invalid || err instanceof ConfigError) return new InvalidArgumentError(undefined, err.message);
  if (err instanceof NeedsIssue8) return new UnimplementedError(err.message);
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
    reason: r.reason,
    labels: r.labels,
    annotations: r.annotations,
  });
}

function runtimeService(mgr: ContainerManager) {
  return withUnimplemented(runtime.RuntimeServiceService, 'issue #8', {
    version: guarded((): runtime.VersionResponse => ({ version: VERSION, runtimeName: 'berth', runtimeVersion: VERSION, runtimeApiVersion: 'v1' })),
    createContainer: guarded(async (req: runtime.CreateContainerRequest) => {
      const c = req.config;
      if (c === undefined) throw new Invalid('config: required');
      if (req.podSandboxId !== '' && c.annotations['berth.io/oci-bundle'] === undefined) throw new NeedsIssue8('containers in pod sandboxes arrive with issue #8');
      const rec = await mgr.create({
        name: c.metadata?.name ?? '',
        attempt: c.metadata?.attempt ?? 0,
        sandboxId: req.podSandboxId,
        command: c.command,
        args: c.args,
        env: c.envs,
        workingDir: c.workingDir,
        labels: c.labels,
        annotations: c.annotations,
      });
      return runtime.CreateContainerResponse.fromPartial({ containerId: rec.id });
    }),
    startContainer: guarded(async (req: runtime.StartContainerRequest) => {
      await mgr.start(req.containerId);
      return {};
    }),
    stopContainer: guarded(async (req: runtime.StopContainerRequest) => {
      if (req.timeout < 0) throw new Invalid('timeout: must not be negative');
      await mgr.stop(req.containerId, Number(req.timeout));
      return {};
    }),
    removeContainer: guarded(async (req: runtime.RemoveContainerRequest) => {
      await mgr.remove(req.containerId);
      return {};
    }),
    containerStatus: guarded((req: runtime.ContainerStatusRequest) => runtime.ContainerStatusResponse.fromPartial({ status: statusOf(mgr.get(req.containerId)) })),
    listContainers: guarded((req: runtime.ListContainersRequest) => {
      const f = req.filter;
      const containers = mgr.list().filter((r) =>
        (f === undefined || f.id === '' || r.id === f.id) &&
        (f === undefined || f.state === runtime.ContainerState.CONTAINER_STATE_UNSPECIFIED || STATE[r.phase] === f.state) &&
        (f === undefined || f.podSandboxId === '' || r.sandboxId === f.podSandboxId) &&
        Object.entries(f?.labelSelector ?? {}).every(([k, v]) => r.labels[k] === v),
      );
      return runtime.ListContainersResponse.fromPartial({
        containers: containers.map((r) => ({ id: r.id, podSandboxId: r.sandboxId, metadata: { name: r.name, attempt: r.attempt }, state: STATE[r.phase], createdAtUs: r.createdAtUs, labels: r.labels, annotations: r.annotations })),
      });
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
  });
}

export const spec: ServiceSpec<{}> = {
  name: 'runtime-shim',
  setup: (ctx) => {
    // Orphans of our containers (double-forked daemons) are reparented to us and reaped.
    containerSyscalls.setChildSubreaper();
    const mgr = new ContainerManager({ root: path.join(ctx.config.stateDir, 'containers') });
    mgr.startReaper();
    return {
      services: [
        { definition: runtime.RuntimeServiceService, implementation: runtimeService(mgr) },
        { definition: runtime.ImageServiceService, implementation: imageService({ store: openImageStore(ctx.config.stateDir), logger: ctx.logger }) },
      ],
      close: () => mgr.close(),
    };
  },
};
