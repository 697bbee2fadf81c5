// Prometheus metrics: one registry per process and a `/metrics` HTTP endpoint (prom-client).
import * as http from 'node:http';
import * as fs from 'node:fs';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { parseListen } from './listen';

export { Registry };

/** A registry labelled with the service; with the default process metrics unless told not to. */
export function createRegistry(service: string, opts: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  return registry;
}

/** Serves `GET /metrics` on `listen` (`host:port` or `unix:///path`). Resolves once listening. */
export async function serveMetrics(registry: Registry, listen: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url?.split('?')[0] === '/metrics') {
      registry.metrics().then(
        (body) => { res.writeHead(200, { 'content-type': registry.contentType }); res.end(body); },
        (err: Error) => { res.writeHead(500); res.end(err.message); },
      );
      return;
    }
    res.writeHead(404); res.end('not found\n');
  });
  const addr = parseListen(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (addr.kind === 'unix') {
      fs.rmSync(addr.path, { force: true });
      server.listen(addr.path, () => { fs.chmodSync(addr.path, 0o600); resolve(); });
    } else server.listen(addr.port, addr.host, () => resolve());
  });
  return server;
}
