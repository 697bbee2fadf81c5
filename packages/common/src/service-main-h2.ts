// runService() for a service served by the lean node:http2 gRPC server (h2-grpc-server.ts):
// the same flags, config, logging, metrics, health, reflection and drain-then-exit on
// SIGINT/SIGTERM; only the server under the services differs.
import type { z } from 'zod';
import { runService, type ServiceSpec } from './service-main';
import { serveH2 } from './h2-grpc-server';

export function runServiceH2<E extends z.ZodRawShape>(spec: ServiceSpec<E>, argv = process.argv.slice(2), env = process.env): Promise<void> {
  return runService(spec, argv, env, serveH2);
}
