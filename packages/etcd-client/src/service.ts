// berth-etcd-client: the cluster state API (berth.store.v1.Store) in front of etcd.
// The Store itself arrives with issue #4; this process already watches its etcd endpoints and
// reports NOT_SERVING on health while none of them is healthy.
import { store } from '@berth/api';
import { httpGetJson, withUnimplemented, z, type ServiceSpec } from '@berth/common';

const schema = {
  etcdEndpoints: z.array(z.string().url({ message: 'each endpoint must be a URL like http://127.0.0.1:2379' })).min(1).default(['http://127.0.0.1:2379']),
  etcdHealthIntervalMs: z.number().int().min(100).default(2000),
};

/** True when at least one endpoint answers /health with health=true. */
export async function anyEndpointHealthy(endpoints: string[]): Promise<boolean> {
  const results = await Promise.all(endpoints.map(async (e) => {
    try {
      const r = await httpGetJson(new URL('/health', e).toString(), 1000);
      return r.status === 200 && (r.body as { health?: string }).health === 'true';
    } catch {
      return false;
    }
  }));
  return results.some(Boolean);
}

export const spec: ServiceSpec<typeof schema> = {
  name: 'etcd-client',
  options: {
    etcdEndpoints: { flag: 'etcd-endpoints', type: 'list', env: 'BERTH_ETCD_ENDPOINTS', description: 'comma-separated etcd client URLs' },
    etcdHealthIntervalMs: { flag: 'etcd-health-interval-ms', type: 'number', description: 'how often to check etcd health' },
  },
  schema,
  setup: ({ config, logger }) => {
    let timer: NodeJS.Timeout | undefined;
    return {
      services: [{ definition: store.StoreService, implementation: withUnimplemented(store.StoreService, 'issue #4') }],
      servingOnStart: false,
      started: async (server) => {
        let last: boolean | undefined;
        const check = async () => {
          const ok = await anyEndpointHealthy(config.etcdEndpoints);
          if (ok !== last) {
            logger[ok ? 'info' : 'warn']({ endpoints: config.etcdEndpoints }, ok ? 'etcd reachable: SERVING' : 'etcd unreachable: NOT_SERVING');
            server.setServing(ok);
            last = ok;
          }
        };
        await check();
        timer = setInterval(() => void check(), config.etcdHealthIntervalMs);
        timer.unref();
      },
      close: () => clearInterval(timer),
    };
  },
};
