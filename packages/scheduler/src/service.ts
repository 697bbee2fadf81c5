// berth-scheduler: the Scheduler gRPC service (Status, QueueStatus, Explain) over the
// scheduling framework. A thin façade: it checks the request and hands it to the domain objects.
// Until the Store client lands (issue #4) no ClusterSource is connected: Explain on an inline
// snapshot, Status and QueueStatus work; pods are not watched or bound yet.
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

export function schedulerImplementation(s: Scheduler) {
  return {
    status: unary((): scheduler.StatusResponse => {
      const c = s.queue.counts();
      return scheduler.StatusResponse.fromPartial({
        leader: false,
        leaderIdentity: '',
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

const schema = { schedulerConfig: z.string().optional() };

export const spec: ServiceSpec<typeof schema> = {
  name: 'scheduler',
  options: {
    schedulerConfig: { flag: 'scheduler-config', type: 'string', env: 'BERTH_SCHEDULER_CONFIG', description: 'KubeSchedulerConfiguration-style YAML/JSON: profiles, plugins, weights, args, extenders' },
  },
  schema,
  setup: ({ config, logger }) => {
    const file = config.schedulerConfig;
    const cfg = file ? loadConfigFile(file) : resolveConfig({});
    const s = new Scheduler(disconnectedWriter, { config: cfg, log: (msg, fields) => logger.warn(fields ?? {}, msg) });
    logger.info({ profiles: [...s.profiles.keys()], extenders: cfg.extenders.length }, 'scheduler profiles loaded');
    return {
      services: [{ definition: scheduler.SchedulerService, implementation: withUnimplemented(scheduler.SchedulerService, 'issue #7', schedulerImplementation(s)) }],
      close: () => s.stop(),
    };
  },
};

export type { core };
