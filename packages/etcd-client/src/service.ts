// berth-etcd-client: the cluster state API (berth.store.v1.Store) in front of etcd.
// Serves on --listen (the node-local unix socket: the administrator) and, with --secure-listen,
// on TCP with mutual TLS for nodes and users. Health follows etcd: NOT_SERVING while no
// endpoint is healthy or the store has not initialised yet.
import * as os from 'node:os';
import { store } from '@berth/api';
import { httpGetJson, UnavailableError, z, type ServiceSpec } from '@berth/common';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { Authenticator, EtcdV3Backend, Registry, storeImplementation, type StorageBackend } from './store';
import { startSecureListener, type SecureListener } from './store/secure-listener';
import { ClusterSigner, CsrController } from './store/csr-signer';
import { GarbageCollector } from './store/garbage-collector';
import { NodeLifecycleController } from './store/node-lifecycle';
import { EtcdV2Election, EtcdV3Election, type Candidate } from './recipes';
import { EtcdV3Client } from './v3';
import { EtcdV2Client } from './v2';
import { EtcdV2Backend } from './store/backend-v2';

const GO_DURATION = /^(?=\d)(?:\d+h)?(?:\d+m(?!s))?(?:\d+s)?(?:\d+ms)?$/;

/** "1m30s" / "500ms" -> milliseconds. */
function goDurationMs(v: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(v);
  return m ? ((Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0)) * 60 + Number(m[3] ?? 0)) * 1000 + Number(m[4] ?? 0) : NaN;
}

const schema = {
  etcdEndpoints: z.array(z.string().url({ message: 'each endpoint must be a URL like http://127.0.0.1:2379' })).min(1).default(['http://127.0.0.1:2379']),
  etcdHealthIntervalMs: z.number().int().min(100).default(2000),
  etcdApi: z.enum(['v3', 'v2']).default('v3'),
  etcdPrefix: z.string().regex(/^\/[^\s]*[^/\s]$/, { message: 'must be an absolute key prefix like /registry' }).default('/registry'),
  tokenAuthFile: z.string().optional(),
  secureListen: z.string().regex(/^[^\s/]+:\d+$/, { message: 'expected host:port' }).optional(),
  clientCaFile: z.string().optional(),
  tlsCertFile: z.string().optional(),
  tlsPrivateKeyFile: z.string().optional(),
  watchBookmarkIntervalMs: z.number().int().min(100).default(5000),
  clusterSigningCertFile: z.string().optional(),
  clusterSigningKeyFile: z.string().optional(),
  enableGarbageCollector: z.boolean().default(true),
  enableNodeLifecycleController: z.boolean().default(true),
  // Go durations, as kube-controller-manager's flags: "40s", "1m30s", "500ms".
  nodeMonitorGracePeriod: z.string().regex(GO_DURATION, { message: 'expected a duration like 40s or 1m30s' }).refine((v) => goDurationMs(v) >= 100, { message: 'must be at least 100ms' }).default('40s'),
  nodeMonitorPeriod: z.string().regex(GO_DURATION, { message: 'expected a duration like 5s or 500ms' }).refine((v) => goDurationMs(v) >= 50, { message: 'must be at least 50ms' }).default('5s'),
  leaderElectionLeaseDuration: z.string().regex(GO_DURATION, { message: 'expected a duration like 15s' }).refine((v) => goDurationMs(v) >= 1000, { message: 'must be at least 1s' }).default('15s'),
  // Go duration syntax, as kube-controller-manager's flag: "8760h", "720h0m0s", "90m".
  clusterSigningDuration: z.string().regex(/^(\d+h)?(\d+m)?(\d+s)?$/, { message: 'expected a duration like 8760h or 720h0m0s' }).refine((v) => v !== '' && goDurationSeconds(v) >= 600, { message: 'must be at least 10m' }).default('8760h'),
};

/** "720h0m0s" -> seconds. */
function goDurationSeconds(v: string): number {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(v);
  return m ? Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0) : NaN;
}

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

function makeBackend(api: 'v3' | 'v2', endpoints: string[]): StorageBackend {
  if (api === 'v2') return new EtcdV2Backend(new EtcdV2Client({ endpoints }));
  return new EtcdV3Backend(new EtcdV3Client({ endpoints }));
}

/**
 * Candidates in the election of the controllers' leader, on the store's own etcd API. The key
 * sits outside the object prefix (a prefix watch on "/registry" would match "/registry-x" too).
 */
function electionCandidate(backend: StorageBackend, etcdPrefix: string, name: string, ttlSeconds: number): () => Candidate {
  const key = `/berth-leader-election${etcdPrefix}/${name}`;
  if (backend instanceof EtcdV2Backend) return () => new EtcdV2Election(backend.client, key, { ttl: ttlSeconds });
  return () => new EtcdV3Election((backend as EtcdV3Backend).client, key, { ttl: ttlSeconds });
}

export const spec: ServiceSpec<typeof schema> = {
  name: 'etcd-client',
  options: {
    etcdEndpoints: { flag: 'etcd-endpoints', type: 'list', env: 'BERTH_ETCD_ENDPOINTS', description: 'comma-separated etcd client URLs' },
    etcdHealthIntervalMs: { flag: 'etcd-health-interval-ms', type: 'number', description: 'how often to check etcd health' },
    etcdApi: { flag: 'etcd-api', type: 'string', description: 'etcd API the store uses: v3 (default) or v2' },
    etcdPrefix: { flag: 'etcd-prefix', type: 'string', description: 'key prefix of stored objects (default /registry)' },
    tokenAuthFile: { flag: 'token-auth-file', type: 'string', description: 'static bearer tokens: token,user,uid,"group1,group2" per line' },
    secureListen: { flag: 'secure-listen', type: 'string', description: 'host:port of the mutual-TLS listener for nodes and users (with --client-ca-file, --tls-cert-file, --tls-private-key-file)' },
    clientCaFile: { flag: 'client-ca-file', type: 'string', description: 'CA that client certificates of the --secure-listen listener must chain to' },
    tlsCertFile: { flag: 'tls-cert-file', type: 'string', description: 'server certificate of the --secure-listen listener' },
    tlsPrivateKeyFile: { flag: 'tls-private-key-file', type: 'string', description: 'server private key of the --secure-listen listener' },
    watchBookmarkIntervalMs: { flag: 'watch-bookmark-interval-ms', type: 'number', description: 'how often idle watches get a BOOKMARK' },
    clusterSigningCertFile: { flag: 'cluster-signing-cert-file', type: 'string', description: 'cluster CA certificate: turns on the built-in approver and signer of node client certificates (with --cluster-signing-key-file)' },
    clusterSigningKeyFile: { flag: 'cluster-signing-key-file', type: 'string', description: 'private key of --cluster-signing-cert-file' },
    enableGarbageCollector: { flag: 'enable-garbage-collector', type: 'boolean', description: 'delete dependents of deleted owners (ownerReferences); on by default, off with enableGarbageCollector: false in --config' },
    enableNodeLifecycleController: { flag: 'enable-node-lifecycle-controller', type: 'boolean', description: 'mark nodes whose kubelet went silent Unknown and taint not-ready/unreachable nodes; on by default, off with enableNodeLifecycleController: false in --config' },
    nodeMonitorGracePeriod: { flag: 'node-monitor-grace-period', type: 'string', description: 'how long a node may go without renewing its lease or posting status before it is marked Unknown (default 40s)' },
    nodeMonitorPeriod: { flag: 'node-monitor-period', type: 'string', description: 'how often the node lifecycle controller checks node health (default 5s)' },
    leaderElectionLeaseDuration: { flag: 'leader-election-lease-duration', type: 'string', description: 'how long a dead leader of the controllers keeps its place before another berth-etcd-client takes over (default 15s)' },
    clusterSigningDuration: { flag: 'cluster-signing-duration', type: 'string', description: 'longest validity of a signed certificate (default 8760h = 1 year)' },
  },
  schema,
  setup: ({ config, logger }) => {
    let timer: NodeJS.Timeout | undefined;
    let secure: SecureListener | undefined;
    const backend = makeBackend(config.etcdApi, config.etcdEndpoints);
    const registry = new Registry(backend, { prefix: config.etcdPrefix, bookmarkIntervalMs: config.watchBookmarkIntervalMs, logger });
    const authn = new Authenticator(registry, { tokenFile: config.tokenAuthFile, clientCaFile: config.clientCaFile });
    let ready = false;
    // Until the store has initialised (system namespaces, RBAC cache) every call is UNAVAILABLE.
    const gate = (impl: UntypedServiceImplementation): UntypedServiceImplementation => {
      const gated: UntypedServiceImplementation = {};
      for (const [name, fn] of Object.entries(impl)) {
        gated[name] = ((call: { emit?: (e: string, v: unknown) => void }, cb?: (e: unknown) => void) => {
          if (ready) return (fn as (c: unknown, cb?: unknown) => void)(call, cb);
          const err = { code: 14, details: new UnavailableError('the store is starting: etcd is not reachable yet').message };
          if (cb) cb(err); else call.emit?.('error', err);
        }) as UntypedServiceImplementation[string];
      }
      return gated;
    };
    // The unix socket (0600, root) is the local administrator; TCP callers prove who they are.
    const local = gate(storeImplementation(registry, authn, { localAdmin: config.listen.startsWith('unix:') && !config.tlsCert }));
    const remote = gate(storeImplementation(registry, authn, { localAdmin: false }));
    if (config.secureListen && !(config.clientCaFile && config.tlsCertFile && config.tlsPrivateKeyFile)) throw new Error('--secure-listen needs --client-ca-file, --tls-cert-file and --tls-private-key-file');
    if (!config.clusterSigningCertFile !== !config.clusterSigningKeyFile) throw new Error('--cluster-signing-cert-file and --cluster-signing-key-file go together');
    let csrController: CsrController | undefined;
    const gc = config.enableGarbageCollector ? new GarbageCollector(registry, { logger }) : undefined;
    const nodeLifecycle = config.enableNodeLifecycleController ? new NodeLifecycleController(registry, {
      logger,
      gracePeriodMs: goDurationMs(config.nodeMonitorGracePeriod),
      monitorPeriodMs: goDurationMs(config.nodeMonitorPeriod),
      candidate: electionCandidate(backend, config.etcdPrefix, 'node-lifecycle-controller', Math.max(1, Math.round(goDurationMs(config.leaderElectionLeaseDuration) / 1000))),
      identity: `${os.hostname()}_${process.pid}`,
    }) : undefined;
    return {
      services: [{ definition: store.StoreService, implementation: local }],
      servingOnStart: false,
      started: async (server) => {
        if (config.clusterSigningCertFile && config.clusterSigningKeyFile) {
          const signer = await ClusterSigner.load(config.clusterSigningCertFile, config.clusterSigningKeyFile, goDurationSeconds(config.clusterSigningDuration));
          csrController = new CsrController(registry, { signer, logger });
          logger.info({ ca: signer.caCert.subject }, 'approving and signing node client certificates');
        }
        if (config.secureListen) {
          secure = await startSecureListener({ listen: config.secureListen, caFile: config.clientCaFile!, certFile: config.tlsCertFile!, keyFile: config.tlsPrivateKeyFile!, implementation: remote });
          logger.info({ listen: secure.address }, 'serving the Store over TLS (client certificates or bearer tokens)');
        }
        let last: boolean | undefined;
        let starting = false;
        const check = async () => {
          const ok = await anyEndpointHealthy(config.etcdEndpoints);
          if (ok && !ready && !starting) {
            starting = true;
            try {
              await registry.start();
              ready = true;
              csrController?.start();
              gc?.start();
              nodeLifecycle?.start();
              logger.info('store initialised');
            } catch (err) {
              logger.warn({ err: String(err) }, 'store initialisation failed; retrying');
            } finally {
              starting = false;
            }
          }
          const serving = ok && ready;
          if (serving !== last) {
            logger[serving ? 'info' : 'warn']({ endpoints: config.etcdEndpoints }, serving ? 'etcd reachable: SERVING' : 'etcd unreachable: NOT_SERVING');
            server.setServing(serving);
            secure?.setServing(serving);
            last = serving;
          }
        };
        await check();
        timer = setInterval(() => void check(), config.etcdHealthIntervalMs);
        timer.unref();
      },
      close: async () => {
        clearInterval(timer);
        await csrController?.close();
        await gc?.close();
        await nodeLifecycle?.close();
        registry.close();
        await secure?.shutdown(1000);
        backend.close();
      },
    };
  },
};
