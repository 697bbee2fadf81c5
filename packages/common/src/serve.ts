// One way to serve gRPC in Berth: unix socket (mode 0600) or TCP with TLS / mutual TLS; every
// server registers grpc.health.v1.Health and server reflection; SIGINT/SIGTERM drain then exit
// (wired by runService). Handlers are built with `unary`/`serverStream`, the one place where
// domain errors become gRPC status.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { addLazyReflection } from './reflection';
import { toServiceError, InvalidArgumentError, UnimplementedError } from './errors';
import { parseListen, isLoopbackHost } from './listen';
import type { Logger } from './log';

export interface TlsFiles {
  /** CA bundle used to verify the peer (clients, for a server with requireClientCert). */
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Mutual TLS: refuse clients without a certificate signed by caFile. Default true. */
  requireClientCert?: boolean;
}

export interface ServiceRegistration {
  /** Fully qualified service name, e.g. `berth.store.v1.Store` (taken from the definition if omitted). */
  name?: string;
  definition: ServiceDefinition;
  implementation: UntypedServiceImplementation;
}

export interface ServeOptions {
  listen: string;
  services: ServiceRegistration[];
  tls?: TlsFiles;
  /** Plain TCP is refused unless this is set and the host is a loopback address (tests, benches). */
  insecureLoopback?: boolean;
  logger?: Logger;
}

export interface RunningServer {
  server: Server;
  /** `unix:///path` or `host:port` with the bound port. */
  address: string;
  health: HealthImplementation;
  setServing(serving: boolean, service?: string): void;
  /** Graceful drain up to `graceMs`, then force. Removes the unix socket file. */
  shutdown(graceMs?: number): Promise<void>;
}

function serviceNameOf(reg: ServiceRegistration): string {
  if (reg.name) return reg.name;
  const first = Object.values(reg.definition)[0];
  const m = first && /^\/([^/]+)\//.exec(first.path);
  if (!m) throw new Error('cannot infer the service name from an empty definition');
  return m[1];
}

/** A socket file left by a process that is gone is removed; a live one or a non-socket is refused. */
export async function removeStaleSocket(p: string): Promise<void> {
  let st: fs.Stats;
  try { st = fs.lstatSync(p); } catch { return; }
  if (!st.isSocket()) throw new InvalidArgumentError('listen', `${p} exists and is not a socket`);
  const inUse = await new Promise<boolean>((resolve) => {
    const s = net.connect(p);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
  if (inUse) throw new InvalidArgumentError('listen', `${p} is in use by another process`);
  fs.rmSync(p, { force: true });
}

/**
 * What every Berth server carries, on either server: grpc.health.v1 (everything NOT_SERVING until
 * setServing), server reflection, then the services themselves.
 */
export function registerServices(server: Pick<Server, 'addService'>, services: ServiceRegistration[]): Pick<RunningServer, 'health' | 'setServing'> {
  const health = new HealthImplementation({ '': 'NOT_SERVING' });
  health.addToServer(server as Server);
  addLazyReflection(server);
  const names: string[] = [];
  for (const reg of services) {
    server.addService(reg.definition, reg.implementation);
    const name = serviceNameOf(reg);
    names.push(name);
    health.setStatus(name, 'NOT_SERVING');
  }
  const setServing = (serving: boolean, service?: string): void => {
    const st: ServingStatus = serving ? 'SERVING' : 'NOT_SERVING';
    if (service !== undefined) { health.setStatus(service, st); return; }
    health.setStatus('', st);
    for (const n of names) health.setStatus(n, st);
  };
  return { health, setServing };
}

export async function serve(opts: ServeOptions): Promise<RunningServer> {
  const addr = parseListen(opts.listen);
  const server = new Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  const { health, setServing } = registerServices(server, opts.services);

  let creds: ServerCredentials;
  if (opts.tls) {
    creds = ServerCredentials.createSsl(
      fs.readFileSync(opts.tls.caFile),
      [{ cert_chain: fs.readFileSync(opts.tls.certFile), private_key: fs.readFileSync(opts.tls.keyFile) }],
      opts.tls.requireClientCert ?? true,
    );
  } else if (addr.kind === 'unix') {
    creds = ServerCredentials.createInsecure(); // authenticated by the socket's 0600 root-only mode
  } else if (opts.insecureLoopback && isLoopbackHost(addr.host)) {
    creds = ServerCredentials.createInsecure();
    opts.logger?.warn({ listen: opts.listen }, 'serving plain TCP on loopback without TLS');
  } else {
    throw new InvalidArgumentError('listen', `TCP listener ${opts.listen} needs TLS (tls.caFile, tls.certFile, tls.keyFile)`);
  }

  let address: string;
  if (addr.kind === 'unix') {
    fs.mkdirSync(path.dirname(addr.path), { recursive: true, mode: 0o700 });
    await removeStaleSocket(addr.path);
    // umask 0177 while binding so the socket is never reachable by others, not even briefly.
    const old = process.umask(0o177);
    try {
      await bind(server, addr.target, creds);
    } finally {
      process.umask(old);
    }
    fs.chmodSync(addr.path, 0o600);
    address = addr.target;
  } else {
    const port = await bind(server, addr.target, creds);
    address = `${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${port}`;
  }

  const shutdown = async (graceMs = 5000): Promise<void> => {
    setServing(false);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, graceMs);
      server.tryShutdown(() => { clearTimeout(timer); resolve(); });
    });
    if (addr.kind === 'unix') fs.rmSync(addr.path, { force: true });
  };

  return { server, address, health, setServing, shutdown };
}

function bind(server: Server, target: string, creds: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(target, creds, (err, port) => (err ? reject(err) : resolve(port))));
}

/** Wraps an async unary handler; thrown errors are mapped to gRPC status here and only here. */
export function unary<Req, Res>(fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then((res) => callback(null, res), (err: unknown) => callback(toServiceError(err)));
  };
}

/** Wraps an async generator as a server-streaming handler, honouring cancellation and backpressure. */
export function serverStream<Req, Res>(fn: (req: Req, call: ServerWritableStream<Req, Res>, signal: AbortSignal) => AsyncIterable<Res>) {
  return (call: ServerWritableStream<Req, Res>): void => {
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    (async () => {
      for await (const msg of fn(call.request, call, ac.signal)) {
        if (ac.signal.aborted) break;
        if (!call.write(msg)) await new Promise<void>((r) => { call.once('drain', r); ac.signal.addEventListener('abort', () => r(), { once: true }); });
      }
    })().then(
      () => { if (!ac.signal.aborted) call.end(); },
      (err: unknown) => { if (!ac.signal.aborted) call.emit('error', toServiceError(err)); },
    );
  };
}

/**
 * An implementation in which every method answers UNIMPLEMENTED and names the issue that
 * builds it; `overrides` supplies the methods that exist.
 */
export function withUnimplemented(
  definition: ServiceDefinition,
  note: string,
  overrides: UntypedServiceImplementation = {},
): UntypedServiceImplementation {
  const impl: UntypedServiceImplementation = {};
  for (const [method, def] of Object.entries(definition)) {
    if (overrides[method]) { impl[method] = overrides[method]; continue; }
    const err = () => toServiceError(new UnimplementedError(`${def.path.slice(1).replace('/', '.')} is not built yet (${note})`));
    if (!def.requestStream && !def.responseStream) impl[method] = (_c: unknown, cb: sendUnaryData<unknown>) => cb(err());
    else if (!def.responseStream) impl[method] = (_c: unknown, cb: sendUnaryData<unknown>) => cb(err());
    else impl[method] = (call: { emit: (ev: string, e: unknown) => boolean }) => { call.emit('error', err()); };
  }
  return impl;
}

export { status };
