// berth-cni-manager: pod networking (NetworkService) on a unix socket (0600).
// The netlink fast path, IPAM and modes arrive with issue #6; until then every RPC answers
// UNIMPLEMENTED and names the issue.
import { cni } from '@berth/api';
import { withUnimplemented, type ServiceSpec } from '@berth/common';

export const spec: ServiceSpec<{}> = {
  name: 'cni-manager',
  setup: () => ({
    services: [{ definition: cni.NetworkServiceService, implementation: withUnimplemented(cni.NetworkServiceService, 'issue #6') }],
  }),
};
