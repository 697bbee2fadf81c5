// runService() for a service served by the lean node:http2 gRPC server (h2-grpc-server.ts):
// the same flags, config, logging, metrics, health, reflection and drain-then-exit on
// SIGINT/SIGTERM; only the server under the services differs. (runService in
// service-main.ts is this with serve(); the two could become one taking the serve function.)
import * as fs from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import type { z } from 'zod';
import { ConfigError, usage } from './config';
import { createLogger } from './log';
import { createRegistry, Registry, serveMetrics } from './metrics';
import type { RunningServer } from './serve';
import { loadServiceConfig, type ServiceInstance, type ServiceSpec } from './service-main';
import { serveH2, type RunningH2Server } from './h2-grpc-server';

export async function runServiceH2<E extends z.ZodRawShape>(spec: ServiceSpec<E>, argv = process.argv.slice(2), env = process.env): Promise<void> {
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
  const metrics = config.metricsListen ? createRegistry(spec.name) : new Registry();
  let running: RunningH2Server | undefined;
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
    running = await serveH2({ listen: config.listen, services: instance.services, ...(tls ? { tls } : {}), insecureLoopback: config.insecureLoopback, logger });
    if (config.metricsListen) metricsServer = await serveMetrics(metrics, config.metricsListen);
    if (instance.servingOnStart ?? true) running.setServing(true);
    // started() gets the serving handle (setServing, health, address, shutdown); its `server`
    // is the lean server, not a grpc-js Server.
    await instance.started?.(running as unknown as RunningServer);
    logger.info({ listen: running.address, stateDir: config.stateDir, metrics: config.metricsListen }, 'serving');
  } catch (err) {
    logger.error({ err }, 'failed to start');
    await running?.shutdown(0).catch(() => undefined);
    await instance?.close?.();
    fail(err, err instanceof ConfigError || (err as { kind?: string }).kind === 'InvalidArgument' ? 2 : 1);
  }
}
