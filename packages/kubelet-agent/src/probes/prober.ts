// One probe attempt of each kind: exec (inside the container, through the runtime), httpGet,
// tcpSocket and grpc health, sent from the node to the pod's address. Each returns
// success/failure with a short output for the Unhealthy event; none throws for a probe failure.
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { credentials, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import type { core } from '@berth/api';

export interface ExecResult {
  exitCode: number;
  output: string;
  timedOut: boolean;
}

/** The seam through which exec probes (and exec hooks) run inside a container. */
export interface ContainerExec {
  exec(containerId: string, cmd: string[], timeoutMs: number): Promise<ExecResult>;
}

export type ProbeResult = 'success' | 'failure' | 'unknown';

export interface ProbeOutcome {
  result: ProbeResult;
  output: string;
}

export interface ProbeTarget {
  podIP: string;
  containerId: string;
  container: core.Container;
}

export class ProbeSpecError extends Error {
  constructor(readonly field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = 'ProbeSpecError';
  }
}

const MAX_BODY = 10 * 1024;
const MAX_REDIRECTS = 10;
const USER_AGENT = 'berth-probe/0.1';

/** Resolves a probe port given by number or by the name of one of the container's ports. */
export function resolvePort(port: core.IntOrString | undefined, container: core.Container, field: string): number {
  if (!port) throw new ProbeSpecError(field, 'Required value');
  let n: number;
  if (port.stringValue !== undefined && port.stringValue !== '') {
    const named = container.ports.find((p) => p.name === port.stringValue);
    if (!named) throw new ProbeSpecError(field, `no container port named ${JSON.stringify(port.stringValue)} in container ${container.name}`);
    n = named.containerPort;
  } else n = port.intValue ?? 0;
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new ProbeSpecError(field, `port ${n} is out of range 1-65535`);
  return n;
}

export async function runProbe(probe: core.Probe, target: ProbeTarget, exec: ContainerExec, field = 'probe'): Promise<ProbeOutcome> {
  const timeoutMs = (probe.timeoutSeconds > 0 ? probe.timeoutSeconds : 1) * 1000;
  try {
    if (probe.exec) return await execProbe(probe.exec, target.containerId, exec, timeoutMs);
    if (probe.httpGet) return await httpProbe(probe.httpGet, target, timeoutMs, `${field}.httpGet`);
    if (probe.tcpSocket) {
      const port = resolvePort(probe.tcpSocket.port, target.container, `${field}.tcpSocket.port`);
      return await tcpProbe(probe.tcpSocket.host || target.podIP, port, timeoutMs);
    }
    if (probe.grpc) return await grpcProbe(target.podIP, probe.grpc.port, probe.grpc.service ?? '', timeoutMs, `${field}.grpc.port`);
    throw new ProbeSpecError(field, 'must specify a handler type (exec, httpGet, tcpSocket or grpc)');
  } catch (e) {
    // A probe the spec makes impossible is an unknown result with the reason, not a crash.
    if (e instanceof ProbeSpecError) return { result: 'unknown', output: e.message };
    return { result: 'failure', output: (e as Error).message };
  }
}

async function execProbe(action: core.ExecAction, containerId: string, exec: ContainerExec, timeoutMs: number): Promise<ProbeOutcome> {
  if (!action.command.length) throw new ProbeSpecError('exec.command', 'Required value');
  const r = await exec.exec(containerId, action.command, timeoutMs);
  if (r.timedOut) return { result: 'failure', output: `command ${JSON.stringify(action.command)} timed out after ${timeoutMs / 1000}s` };
  if (r.exitCode === 0) return { result: 'success', output: r.output };
  return { result: 'failure', output: r.output || `command ${JSON.stringify(action.command)} exited with ${r.exitCode}` };
}

function hostForUrl(host: string): string {
  return net.isIPv6(host) ? `[${host}]` : host;
}

export async function httpProbe(action: core.HTTPGetAction, target: ProbeTarget, timeoutMs: number, field = 'httpGet'): Promise<ProbeOutcome> {
  const scheme = (action.scheme || 'HTTP').toUpperCase();
  if (scheme !== 'HTTP' && scheme !== 'HTTPS') throw new ProbeSpecError(`${field}.scheme`, `unsupported value ${JSON.stringify(action.scheme)} (HTTP, HTTPS)`);
  const port = resolvePort(action.port, target.container, `${field}.port`);
  const host = action.host || target.podIP;
  if (!host) throw new ProbeSpecError(`${field}.host`, 'no host given and the pod has no IP yet');
  let p = action.path || '/';
  if (!p.startsWith('/')) p = `/${p}`;
  const headers: Record<string, string> = { 'user-agent': USER_AGENT, accept: '*/*' };
  for (const h of action.httpHeaders) {
    if (!h.name) throw new ProbeSpecError(`${field}.httpHeaders`, 'header name is required');
    headers[h.name.toLowerCase()] = h.value;
  }
  let url = new URL(`${scheme.toLowerCase()}://${hostForUrl(host)}:${port}${p}`);
  const deadline = Date.now() + timeoutMs;
  for (let hop = 0; ; hop++) {
    const res = await httpGetOnce(url, headers, deadline);
    if (res.status >= 300 && res.status < 400 && res.location) {
      const next = new URL(res.location, url);
      // Following a redirect to another host would probe something that is not the pod: the
      // kubelet counts that as success with a warning, and so do we.
      if (next.host !== url.host) return { result: 'success', output: `Probe terminated redirects, response: ${res.status} to ${next.host}` };
      if (hop >= MAX_REDIRECTS) return { result: 'failure', output: `stopped after ${MAX_REDIRECTS} redirects` };
      url = next;
      continue;
    }
    if (res.status >= 200 && res.status < 400) return { result: 'success', output: res.body };
    return { result: 'failure', output: `HTTP probe failed with statuscode: ${res.status}` };
  }
}

function httpGetOnce(url: URL, headers: Record<string, string>, deadline: number): Promise<{ status: number; body: string; location?: string }> {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === 'https:' ? https : http;
    const h = { ...headers };
    const hostHeader = h.host;
    delete h.host;
    const req = mod.request(
      {
        method: 'GET',
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port,
        path: url.pathname + url.search,
        headers: { ...h, host: hostHeader ?? url.host, connection: 'close' },
        // Probes do not verify certificates (Kubernetes' behaviour): the pod's serving
        // certificate is usually not issued for its IP.
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (b: Buffer) => {
          if (size < MAX_BODY) chunks.push(b.subarray(0, MAX_BODY - size));
          size += b.length;
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), location: res.headers.location });
        });
        res.on('error', (e) => { clearTimeout(timer); reject(e); });
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`Get "${url.href}": context deadline exceeded (timeout ${Math.round((deadline - Date.now()) / 1000) || 1}s)`)), Math.max(0, deadline - Date.now()));
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    req.end();
  });
}

export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ProbeOutcome> {
  if (!host) return Promise.resolve({ result: 'unknown', output: 'tcpSocket.host: no host given and the pod has no IP yet' });
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const timer = setTimeout(() => { sock.destroy(); resolve({ result: 'failure', output: `dial tcp ${hostForUrl(host)}:${port}: i/o timeout` }); }, timeoutMs);
    sock.once('connect', () => { clearTimeout(timer); sock.destroy(); resolve({ result: 'success', output: '' }); });
    sock.once('error', (e) => { clearTimeout(timer); sock.destroy(); resolve({ result: 'failure', output: `dial tcp ${hostForUrl(host)}:${port}: ${(e as NodeJS.ErrnoException).code ?? e.message}` }); });
  });
}

// grpc.health.v1.Health/Check, encoded by hand: the request is one string field (1), the
// response one enum field (1). Probing needs nothing else of protobuf.
function encodeHealthRequest(service: string): Buffer {
  const s = Buffer.from(service, 'utf8');
  if (!s.length) return Buffer.alloc(0);
  const len: number[] = [];
  let n = s.length;
  while (n > 0x7f) { len.push((n & 0x7f) | 0x80); n >>>= 7; }
  len.push(n);
  return Buffer.concat([Buffer.from([0x0a, ...len]), s]);
}

function decodeHealthResponse(b: Buffer): number {
  let i = 0;
  let status = 0;
  while (i < b.length) {
    const tag = b[i++];
    if (tag === 0x08) {
      let v = 0, shift = 0;
      while (i < b.length) { const x = b[i++]; v |= (x & 0x7f) << shift; shift += 7; if (!(x & 0x80)) break; }
      status = v;
    } else break; // unknown fields: the status comes first in practice
  }
  return status;
}

const HealthClient = makeGenericClientConstructor(
  {
    check: {
      path: '/grpc.health.v1.Health/Check',
      requestStream: false,
      responseStream: false,
      requestSerialize: (r: { service: string }) => encodeHealthRequest(r.service),
      requestDeserialize: (b: Buffer) => ({ service: b.toString() }),
      responseSerialize: () => Buffer.alloc(0),
      responseDeserialize: (b: Buffer) => ({ status: decodeHealthResponse(b) }),
    },
  },
  'grpc.health.v1.Health',
);

const HEALTH_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

export function grpcProbe(host: string, port: number, service: string, timeoutMs: number, field = 'grpc.port'): Promise<ProbeOutcome> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ProbeSpecError(field, `port ${port} is out of range 1-65535`);
  if (!host) return Promise.resolve({ result: 'unknown', output: 'grpc: the pod has no IP yet' });
  // Kubernetes' gRPC probes are plaintext (no TLS, no auth) by design.
  const client = new HealthClient(`${hostForUrl(host)}:${port}`, credentials.createInsecure(), { 'grpc.enable_retries': 0 });
  return new Promise<ProbeOutcome>((resolve) => {
    (client as unknown as { check: (r: unknown, o: unknown, cb: (e: ServiceError | null, r: { status: number }) => void) => void }).check(
      { service },
      { deadline: Date.now() + timeoutMs },
      (err, res) => {
        client.close();
        if (err) resolve({ result: 'failure', output: `rpc error: code = ${err.code} desc = ${err.details || err.message}` });
        else if (res.status === 1) resolve({ result: 'success', output: '' });
        else resolve({ result: 'failure', output: `service unhealthy (responded with "${HEALTH_STATUS[res.status] ?? res.status}")` });
      },
    );
  });
}
