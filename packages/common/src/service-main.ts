// The main() of every Berth service process: flags/env/file config with the common options
// (--listen, --state-dir, --config, --log-level, --metrics-listen, TLS files), JSON logging,
// Prometheus metrics, gRPC serving with health + reflection, and a drain-then-exit on
// SIGINT/SIGTERM. A service supplies only its options and its gRPC implementations.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Server as HttpServer } from 'node:http';
import { z } from 'zod';
import { ConfigError, loadConfig, usage, type OptionSpec } from './config';
import { createLogger, type Logger } from './log';
import { createRegistry, serveMetrics, type Registry } from './metrics';
import { serve, type RunningServer, type ServeOptions, type ServiceRegistration } from './serve';
import { parseListen } from './listen';

export const DEFAULT_RUN_DIR = '/run/berth';
export const DEFAULT_STATE_DIR = '/var/lib/berth';

export function runDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.BERTH_RUN_DIR || DEFAULT_RUN_DIR;
}
export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  return env.BERTH_STATE_DIR || DEFAULT_STATE_DIR;
}
/** The default socket of a service: `$BERTH_RUN_DIR/<service>.sock`. */
export function defaultSocket(service: string, env: NodeJS.ProcessEnv = process.env): string {
  return `unix://${path.join(runDir(env), `${service}.sock`)}`;
}

export const commonOptions = {
  listen: { flag: 'listen', type: 'string', env: 'BERTH_LISTEN', description: 'unix:///path or host:port to serve gRPC on' },
  stateDir: { flag: 'state-dir', type: 'string', description: 'directory for this service\'s state (default $BERTH_STATE_DIR/<service>)' },
  config: { flag: 'config', type: 'string', env: 'BERTH_CONFIG', description: 'YAML or JSON config file; flags and env override it' },
  logLevel: { flag: 'log-level', type: 'string', env: 'BERTH_LOG_LEVEL', description: 'trace|debug|info|warn|error' },
  metricsListen: { flag: 'metrics-listen', type: 'string', description: 'host:port or unix:///path for GET /metrics (off if unset)' },
  tlsCa: { flag: 'tls-ca', type: 'string', description: 'CA bundle that client certificates must chain to (TCP listeners)' },
  tlsCert: { flag: 'tls-cert', type: 'string', description: 'server certificate (TCP listeners)' },
  tlsKey: { flag: 'tls-key', type: 'string', description: 'server private key (TCP listeners)' },
  insecureLoopback: { flag: 'insecure-loopback', type: 'boolean', description: 'allow plain TCP on a loopback address (tests only)' },
  shutdownGraceMs: { flag: 'shutdown-grace-ms', type: 'number', description: 'how long to drain calls on SIGTERM' },
} satisfies Record<string, OptionSpec>;

const listenSchema = z.string().refine((v) => { try { parseListen(v); return true; } catch { return false; } }, { message: 'expected unix:///absolute/path or host:port' });

export const commonSchema = {
  listen: listenSchema.optional(),
  stateDir: z.string().refine((p) => path.isAbsolute(p), { message: 'must be an absolute path' }).optional(),
  config: z.string().optional(),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
  metricsListen: listenSchema.optional(),
  tlsCa: z.string().optional(),
  tlsCert: z.string().optional(),
  tlsKey: z.string().optional(),
  insecureLoopback: z.boolean().default(false),
  shutdownGraceMs: z.number().int().nonnegative().default(5000),
};

export type CommonConfig = {
  listen: string;
  stateDir: string;
  config?: string;
  logLevel: string;
  metricsListen?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  insecureLoopback: boolean;
  shutdownGraceMs: number;
};

export interface ServiceContext<C> {
  config: CommonConfig & C;
  logger: Logger;
  metrics: Registry;
}

export interface ServiceInstance {
  services: ServiceRegistration[];
  /** Called once serving; the service may flip health itself (e.g. while a dependency is down). */
  started?(server: RunningServer): void | Promise<void>;
  /** Called on shutdown after the server drained. */
  close?(): void | Promise<void>;
  /** Whether to mark SERVING right after start (default true). */
  servingOnStart?: boolean;
}

export interface ServiceSpec<E extends z.ZodRawShape> {
  /** Directory name of the service, e.g. `etcd-client`; the binary is `berth-<name>`. */
  name: string;
  options?: Record<string, OptionSpec>;
  schema?: E;
  setup(ctx: ServiceContext<z.infer<z.ZodObject<E>>>): Promise<ServiceInstance> | ServiceInstance;
}

/** Parses config for a service; throws ConfigError. Exported for tests. */
export function loadServiceConfig<E extends z.ZodRawShape>(spec: ServiceSpec<E>, argv: string[], env: NodeJS.ProcessEnv) {
  const options = { ...commonOptions, ...(spec.options ?? {}) };
  const schema = z.object({ ...commonSchema, ...(spec.schema ?? ({} as E)) });
  const loaded = loadConfig({ options, schema, argv, env });
  if (loaded.positionals.length) throw new ConfigError(`command line: unexpected argument "${loaded.positionals[0]}"`);
  const cfg = loaded.config as Record<string, unknown>;
  cfg.listen ??= defaultSocket(spec.name, env);
  cfg.stateDir ??= path.join(stateRoot(env), spec.name);
  return { config: cfg as CommonConfig & z.infer<z.ZodObject<E>>, help: loaded.help, options };
}

/** The server under a service: grpc-js (serve) or the lean node:http2 one (serveH2). */
export type ServeFunction = (opts: ServeOptions) => Promise<Omit<RunningServer, 'server'> & { server: unknown }>;

export async function runService<E extends z.ZodRawShape>(spec: ServiceSpec<E>, argv = process.argv.slice(2), env = process.env, serveWith: ServeFunction = serve): Promise<void> {
  const bin = `berth-${spec.name}`;
  const fail = (err: unknown, code: number): never => {
    process.stderr.write(`${bin}: error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(code);
  };
  let loaded: ReturnType<typeof loadServiceConfig<E>>;
  try {
    loaded = loadServiceConfig(spec, argv, env);
  } catch (err) {
    if (err instanceof ConfigError) return fail(err, 2);
    throw err;
  }
  if (loaded.help) {
    process.stdout.write(usage(bin, loaded.options) + '\n');
    return;
  }
  const { config } = loaded;
  const logger = createLogger(spec.name, { level: config.logLevel });
  // Default process metrics only when they can be scraped: prom-client's event-loop-delay
  // monitor wakes the process 100 times a second (~7-10 ms of CPU per second here, measured),
  // and an idle node service should cost nothing.
  const metrics = createRegistry(spec.name, { processMetrics: !!config.metricsListen });
  let running: Awaited<ReturnType<ServeFunction>> | undefined;
  let metricsServer: HttpServer | undefined;
  let instance: ServiceInstance | undefined;
  let stopping = false;

  const stop = async (signal: string): Promise<void> => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    try {
      await running?.shutdown(config.shutdownGraceMs);
      await instance?.close?.();
      await new Promise<void>((r) => (metricsServer ? metricsServer.close(() => r()) : r()));
    } catch (err) {
      logger.error({ err }, 'error during shutdown');
      process.exit(1);
    }
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));

  try {
    fs.mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    instance = await spec.setup({ config, logger, metrics });
    if (!!config.tlsCa !== !!config.tlsCert || !!config.tlsCert !== !!config.tlsKey) throw new ConfigError('tls-ca, tls-cert and tls-key must be given together');
    const tls = config.tlsCa && config.tlsCert && config.tlsKey ? { caFile: config.tlsCa, certFile: config.tlsCert, keyFile: config.tlsKey, requireClientCert: true } : undefined;
    running = await serveWith({ listen: config.listen, services: instance.services, ...(tls ? { tls } : {}), insecureLoopback: config.insecureLoopback, logger });
    if (config.metricsListen) metricsServer = await serveMetrics(metrics, config.metricsListen);
    if (instance.servingOnStart ?? true) running.setServing(true);
    // started() gets the serving handle (setServing, health, address, shutdown); under the lean
    // server its `server` is that server, not a grpc-js Server.
    await instance.started?.(running as RunningServer);
    logger.info({ listen: running.address, stateDir: config.stateDir, metrics: config.metricsListen }, 'serving');
  } catch (err) {
    logger.error({ err }, 'failed to start');
    await running?.shutdown(0).catch(() => undefined);
    await instance?.close?.();
    fail(err, err instanceof ConfigError || (err as { kind?: string }).kind === 'InvalidArgument' ? 2 : 1);
  }
}
