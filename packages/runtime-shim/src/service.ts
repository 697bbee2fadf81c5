// berth-runtime-shim: the CRI-like RuntimeService and ImageService on a unix socket (0600).
// Sandboxes, containers and images arrive with the runtime issues (#5, #8); until then every
// RPC answers UNIMPLEMENTED and names the issue.
import { runtime } from '@berth/api';
import { withUnimplemented, type ServiceSpec } from '@berth/common';

export const spec: ServiceSpec<{}> = {
  name: 'runtime-shim',
  setup: () => ({
    services: [
      { definition: runtime.RuntimeServiceService, implementation: withUnimplemented(runtime.RuntimeServiceService, 'issues #5 and #8') },
      { definition: runtime.ImageServiceService, implementation: withUnimplemented(runtime.ImageServiceService, 'issue #8') },
    ],
  }),
};
