// berth-scheduler: the Scheduler gRPC service (Status, QueueStatus, Explain).
// The framework, plugins and queue arrive with issue #7; until then every RPC answers
// UNIMPLEMENTED and names the issue.
import { scheduler } from '@berth/api';
import { withUnimplemented, type ServiceSpec } from '@berth/common';

export const spec: ServiceSpec<{}> = {
  name: 'scheduler',
  setup: () => ({
    services: [{ definition: scheduler.SchedulerService, implementation: withUnimplemented(scheduler.SchedulerService, 'issue #7') }],
  }),
};
