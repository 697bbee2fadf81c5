// berth-scheduler: the Scheduler gRPC service (Status, QueueStatus, Explain) over the
// scheduling framework. A thin façade: it checks the request and hands it to the domain objects.
// With --store it watches the cluster through the Store API, takes part in leader election
// through a Lease, and schedules while it leads; without it, Explain on inline snapshots,
// Status and QueueStatus still work (nothing is watched or bound).
import * as os from 'node:os';
import { StoreClient, storeClientFromConfig, storeClientOptions, storeClientSchema } from '@berth/apimachinery';
import { LeaderElector } from './leader';
import { StoreCluster } from './store-cluster';
import { scheduler } from '@berth/api';
import { UnavailableError, unary, withUnimplemented, z, type ServiceSpec } from '@berth/common';
import type { core } from '@berth/api';
import type { ClusterWriter } from './cluster';
import { loadConfigFile, resolveConfig } from './config';
import { explain } from './explain';
import { Scheduler } from './scheduler';

export const VERSION = '0.1.0';

/** The writer used while no cluster is connected: every write is refused as retryable. */
export const disconnectedWriter: ClusterWriter = {
  bind: async () => { throw new UnavailableError('no cluster connected: the Store client is not wired yet (issue #4)'); },
  deletePod: async () => { throw new UnavailableError('no cluster connected'); },
  updatePodStatus: async () => undefined,
  recordEvent: () => undefined,
};

const queueName = { active: scheduler.QueueName.QUEUE_NAME_ACTIVE, backoff: scheduler.QueueName.QUEUE_NAME_BACKOFF, unschedulable: scheduler.QueueName.QUEUE_NAME_UNSCHEDULABLE };

export interface LeaderState { leader: boolean; observedHolder: string }

export function schedulerImplementation(s: Scheduler, election?: () => LeaderState | undefined) {
  return {
    status: unary((): scheduler.StatusResponse => {
      const c = s.queue.counts();
      const e = election?.();
      return scheduler.StatusResponse.fromPartial({
        leader: e?.leader ?? false,
        leaderIdentity: e?.observedHolder ?? '',
        profiles: [...s.profiles.keys()],
        scheduledCount: s.counters.scheduled,
        unschedulableCount: s.counters.unschedulable,
        errorCount: s.counters.errors,
        pendingCount: c.active + c.backoff + c.unschedulable,
        nodeCount: s.cache.nodeCount(),
        startTime: s.startTime.toISOString(),
        version: VERSION,
      });
    }),
    queueStatus: unary((req: scheduler.QueueStatusRequest): scheduler.QueueStatusResponse => {
      const c = s.queue.counts();
      let pods = s.queue.list().filter((x) => !req.namespace || x.q.info.namespace === req.namespace);
      if (req.limit > 0) pods = pods.slice(0, req.limit);
      return scheduler.QueueStatusResponse.fromPartial({
        activeCount: c.active,
        backoffCount: c.backoff,
        unschedulableCount: c.unschedulable,
        pods: pods.map(({ q, queue }) => ({
          namespace: q.info.namespace,
          name: q.info.name,
          uid: q.info.uid,
          queue: queueName[queue],
          priority: q.info.priority,
          attempts: q.attempts,
          initialAttemptTimestamp: new Date(q.initialAttemptTimestamp).toISOString(),
          backoffExpires: queue === 'backoff' ? new Date(s.queue.backoffExpiry(q)).toISOString() : '',
          lastFailure: q.lastFailure,
          unschedulablePlugins: [...q.unschedulablePlugins].filter(Boolean),
        })),
      });
    }),
    explain: unary((req: scheduler.ExplainRequest) => explain(s, req)),
  };
}

const schema = {
  schedulerConfig: z.string().optional(),
  ...storeClientSchema,
  leaderElect: z.boolean().default(true),
  leaseDurationMs: z.number().int().min(1000).default(15_000),
  renewDeadlineMs: z.number().int().min(500).default(10_000),
  retryPeriodMs: z.number().int().min(100).default(2_000),
  identity: z.string().optional(),
};

export const spec: ServiceSpec<typeof schema> = {
  name: 'scheduler',
  options: {
    schedulerConfig: { flag: 'scheduler-config', type: 'string', env: 'BERTH_SCHEDULER_CONFIG', description: 'KubeSchedulerConfiguration-style YAML/JSON: profiles, plugins, weights, args, extenders' },
    ...storeClientOptions,
    leaderElect: { flag: 'leader-elect', type: 'boolean', description: 'take part in leader election through a Lease (default true)' },
    leaseDurationMs: { flag: 'leader-elect-lease-duration-ms', type: 'number', description: 'how long a lease lasts without renewal (default 15000)' },
    renewDeadlineMs: { flag: 'leader-elect-renew-deadline-ms', type: 'number', description: 'a leader that cannot renew for this long steps down (default 10000)' },
    retryPeriodMs: { flag: 'leader-elect-retry-period-ms', type: 'number', description: 'how often to try to acquire or renew (default 2000)' },
    identity: { flag: 'identity', type: 'string', description: 'this replica\'s identity in the lease (default hostname_pid)' },
  },
  schema,
  setup: ({ config, logger }) => {
    const file = config.schedulerConfig;
    const cfg = file ? loadConfigFile(file) : resolveConfig({});
    const log = (msg: string, fields?: Record<string, unknown>) => logger.warn(fields ?? {}, msg);
    const identity = config.identity ?? `${os.hostname()}_${process.pid}`;
    let client: StoreClient | undefined;
    let cluster: StoreCluster | undefined;
    if (config.store) {
      client = storeClientFromConfig(config)!;
      cluster = new StoreCluster(client, { component: 'default-scheduler', instance: identity, log });
    }
    const s = new Scheduler(cluster ?? disconnectedWriter, { config: cfg, log });
    logger.info({ profiles: [...s.profiles.keys()], extenders: cfg.extenders.length, store: config.store ?? null }, 'scheduler profiles loaded');
    let elector: LeaderElector | undefined;
    let standalone: LeaderState | undefined;
    return {
      services: [{ definition: scheduler.SchedulerService, implementation: withUnimplemented(scheduler.SchedulerService, 'issue #7', schedulerImplementation(s, () => elector ?? standalone)) }],
      started: () => {
        if (!cluster || !client) return;
        // Informers start at once (a standby keeps a warm cache); scheduling waits for leadership.
        void cluster.start(s).then(() => {
          logger.info({ nodes: s.cache.nodeCount() }, 'informers synced');
          if (!config.leaderElect) {
            standalone = { leader: true, observedHolder: identity };
            s.run();
            return;
          }
          elector = new LeaderElector(client!, {
            namespace: 'kube-system', name: 'berth-scheduler', identity,
            leaseDurationMs: config.leaseDurationMs, renewDeadlineMs: config.renewDeadlineMs, retryPeriodMs: config.retryPeriodMs,
            onStartedLeading: () => s.run(),
            // Like kube-scheduler: a replica that lost the lease exits and is restarted as a candidate.
            onStoppedLeading: () => { logger.error('leader election lost'); process.exit(1); },
            log,
          });
          return elector.start();
        }, (err: Error) => logger.error({ err: err.message }, 'informers failed'));
      },
      // Never throws: a failing step must not turn a clean exit (or a config error's 2) into a crash.
      close: async () => {
        for (const step of [() => elector?.stop(), () => s.stop(), () => cluster?.stop(), () => client?.raw.close()]) {
          await Promise.resolve().then(step).catch((err: Error) => logger.warn({ err: err.message }, 'shutdown step failed'));
        }
      },
    };
  },
};

export type { core };
