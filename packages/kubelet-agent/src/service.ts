// berth-kubelet-agent: the node agent's Kubelet gRPC service (ListPods, logs, exec, stats).
// The agent itself arrives with issue #9; until then every RPC answers UNIMPLEMENTED and names
// the issue.
import { kubelet } from '@berth/api';
import { withUnimplemented, type ServiceSpec } from '@berth/common';

export const spec: ServiceSpec<{}> = {
  name: 'kubelet-agent',
  setup: () => ({
    services: [{ definition: kubelet.KubeletService, implementation: withUnimplemented(kubelet.KubeletService, 'issue #9') }],
  }),
};
