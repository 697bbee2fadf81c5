// Each probe kind against real servers that the test starts on 127.0.0.1: HTTP and HTTPS with
// headers, named ports and redirects; TCP; gRPC health via the common server (health service);
// exec through the real local process runner.
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { core } from '@berth/api';
import { makeTestPki, serve, type RunningServer } from '@berth/common';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { realClock } from '../clock';
import { LocalProcesses } from '../testing/local-processes';
import { runProbe, resolvePort, type ContainerExec } from './prober';

const noExec: ContainerExec = { exec: () => Promise.reject(new Error('exec not expected')) };

function listen(server: net.Server): Promise<number> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)));
}

const closeServer = (s: net.Server) => new Promise<void>((r) => { s.close(() => r()); (s as http.Server).closeAllConnections?.(); });

describe('httpGet probes', () => {
  let server: http.Server;
  let port: number;
  let seen: http.IncomingHttpHeaders[] = [];
  let tls: https.Server;
  let tlsPort: number;
  let dir: string;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push(req.headers);
      const u = new URL(req.url!, 'http://x');
      if (u.pathname === '/healthz') { res.writeHead(200); res.end('ok'); }
      else if (u.pathname === '/redirect') { res.writeHead(302, { location: '/healthz' }); res.end(); }
      else if (u.pathname === '/loop') { res.writeHead(302, { location: '/loop' }); res.end(); }
      else if (u.pathname === '/elsewhere') { res.writeHead(301, { location: 'http://127.0.0.2:1/' }); res.end(); }
      else if (u.pathname === '/slow') { setTimeout(() => { res.writeHead(200); res.end(); }, 3000).unref(); }
      else if (u.pathname === '/status') { res.writeHead(Number(u.searchParams.get('code'))); res.end('body of error'); }
      else { res.writeHead(404); res.end(); }
    });
    port = await listen(server);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-probe-'));
    const pki = makeTestPki(dir);
    tls = https.createServer({ cert: fs.readFileSync(pki.serverCert), key: fs.readFileSync(pki.serverKey) }, (_req, res) => { res.writeHead(204); res.end(); });
    tlsPort = await listen(tls);
  });
  afterAll(async () => {
    await closeServer(server);
    await closeServer(tls);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  afterEach(() => { seen = []; });

  const ctr = () => core.Container.fromPartial({ name: 'web', ports: [{ name: 'http', containerPort: port }, { name: 'https', containerPort: tlsPort }] });
  const probe = (httpGet: Partial<core.HTTPGetAction>, timeoutSeconds = 1) => core.Probe.fromPartial({ httpGet, timeoutSeconds });
  const target = () => ({ podIP: '127.0.0.1', containerId: 'c1', container: ctr() });

  it.each([
    ['200 by port number', () => ({ path: '/healthz', port: { intValue: port } }), 'success'],
    ['by port name', () => ({ path: '/healthz', port: { stringValue: 'http' } }), 'success'],
    ['path without leading slash', () => ({ path: 'healthz', port: { intValue: port } }), 'success'],
    ['same-host redirect is followed', () => ({ path: '/redirect', port: { intValue: port } }), 'success'],
    ['redirect to another host counts as success', () => ({ path: '/elsewhere', port: { intValue: port } }), 'success'],
    ['redirect loop fails', () => ({ path: '/loop', port: { intValue: port } }), 'failure'],
    ['399 is success', () => ({ path: '/status?code=399', port: { intValue: port } }), 'success'],
    ['404 is failure', () => ({ path: '/nope', port: { intValue: port } }), 'failure'],
    ['500 is failure', () => ({ path: '/status?code=500', port: { intValue: port } }), 'failure'],
    ['HTTPS without verifying the certificate', () => ({ path: '/', port: { stringValue: 'https' }, scheme: 'HTTPS' }), 'success'],
  ])('%s', async (_n, spec, want) => {
    const r = await runProbe(probe(spec()), target(), noExec, 'readinessProbe');
    expect(r.result, r.output).toBe(want);
  });

  it('reports the status code of a failure', async () => {
    const r = await runProbe(probe({ path: '/status?code=503', port: { intValue: port } }), target(), noExec);
    expect(r).toEqual({ result: 'failure', output: 'HTTP probe failed with statuscode: 503' });
  });

  it('sends custom headers, a Host override and its user agent', async () => {
    const r = await runProbe(probe({ path: '/healthz', port: { intValue: port }, httpHeaders: [{ name: 'X-Probe', value: 'yes' }, { name: 'Host', value: 'app.example' }] }), target(), noExec);
    expect(r.result).toBe('success');
    expect(seen[0]['x-probe']).toBe('yes');
    expect(seen[0].host).toBe('app.example');
    expect(seen[0]['user-agent']).toMatch(/^berth-probe\//);
  });

  it('uses the explicit host instead of the pod IP', async () => {
    const r = await runProbe(probe({ path: '/healthz', host: '127.0.0.1', port: { intValue: port } }), { ...target(), podIP: '' }, noExec);
    expect(r.result).toBe('success');
  });

  it('times out after timeoutSeconds', async () => {
    const t0 = Date.now();
    const r = await runProbe(probe({ path: '/slow', port: { intValue: port } }, 1), target(), noExec);
    expect(r.result).toBe('failure');
    expect(r.output).toMatch(/deadline exceeded/);
    expect(Date.now() - t0).toBeLessThan(2900);
  });

  it.each([
    [{ path: '/', port: { stringValue: 'metrics' } }, /readinessProbe\.httpGet\.port: no container port named "metrics" in container web/],
    [{ path: '/', port: { intValue: 70000 } }, /readinessProbe\.httpGet\.port: port 70000 is out of range/],
    [{ path: '/', port: { intValue: 80 }, scheme: 'FTP' }, /readinessProbe\.httpGet\.scheme: unsupported value "FTP"/],
  ])('an impossible spec %j is unknown with the field named', async (spec, re) => {
    const r = await runProbe(probe(spec as Partial<core.HTTPGetAction>), target(), noExec, 'readinessProbe');
    expect(r.result).toBe('unknown');
    expect(r.output).toMatch(re);
  });
});

describe('tcpSocket probes', () => {
  it('succeeds on a listening port and fails on a closed one', async () => {
    const server = net.createServer((s) => s.end());
    const port = await listen(server);
    const c = core.Container.fromPartial({ name: 'db', ports: [{ name: 'pg', containerPort: port }] });
    try {
      expect((await runProbe(core.Probe.fromPartial({ tcpSocket: { port: { stringValue: 'pg' } } }), { podIP: '127.0.0.1', containerId: 'x', container: c }, noExec)).result).toBe('success');
    } finally {
      await closeServer(server);
    }
    const r = await runProbe(core.Probe.fromPartial({ tcpSocket: { port: { intValue: port } } }), { podIP: '127.0.0.1', containerId: 'x', container: c }, noExec);
    expect(r).toEqual({ result: 'failure', output: `dial tcp 127.0.0.1:${port}: ECONNREFUSED` });
  });
});

describe('grpc probes', () => {
  let srv: RunningServer;
  beforeAll(async () => {
    srv = await serve({ listen: '127.0.0.1:0', services: [], insecureLoopback: true });
  });
  afterAll(async () => { await srv.shutdown(100); });

  it('follows the health service status, per service name', async () => {
    const port = Number(srv.address.split(':').pop());
    const c = core.Container.fromPartial({ name: 'g' });
    const run = (service?: string) => runProbe(core.Probe.fromPartial({ grpc: { port, service } }), { podIP: '127.0.0.1', containerId: 'x', container: c }, noExec);
    expect((await run()).result).toBe('failure'); // overall status starts NOT_SERVING
    srv.setServing(true, '');
    expect(await run()).toEqual({ result: 'success', output: '' });
    srv.setServing(true, 'berth.app.v1.Orders');
    expect((await run('berth.app.v1.Orders')).result).toBe('success');
    srv.setServing(false, 'berth.app.v1.Orders');
    expect(await run('berth.app.v1.Orders')).toEqual({ result: 'failure', output: 'service unhealthy (responded with "NOT_SERVING")' });
    const unknown = await run('no.such.Service');
    expect(unknown.result).toBe('failure');
    expect(unknown.output).toMatch(/code = 5/); // NOT_FOUND from the health service
  });

  it('fails when nothing listens', async () => {
    const s = net.createServer();
    const port = await listen(s);
    await closeServer(s);
    const r = await runProbe(core.Probe.fromPartial({ grpc: { port }, timeoutSeconds: 1 }), { podIP: '127.0.0.1', containerId: 'x', container: core.Container.fromPartial({ name: 'g' }) }, noExec);
    expect(r.result).toBe('failure');
    expect(r.output).toMatch(/code = 14/);
  });
});

describe('exec probes (real local processes)', () => {
  const procs = new LocalProcesses(realClock);
  afterAll(() => procs.close());
  it('exit 0 succeeds, non-zero fails with the output, a hung command times out and is killed', async () => {
    const id = procs.start('app', ['sleep', '30'], 0);
    const c = core.Container.fromPartial({ name: 'app' });
    const run = (command: string[], timeoutSeconds = 1) => runProbe(core.Probe.fromPartial({ exec: { command }, timeoutSeconds }), { podIP: '', containerId: id, container: c }, procs);
    expect((await run(['true'])).result).toBe('success');
    expect(await run(['sh', '-c', 'echo not ready; exit 3'])).toEqual({ result: 'failure', output: 'not ready\n' });
    const t0 = Date.now();
    const hung = await run(['sleep', '20']);
    expect(hung.result).toBe('failure');
    expect(hung.output).toMatch(/timed out after 1s/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe('resolvePort', () => {
  it('names the field when the port is missing', () => {
    expect(() => resolvePort(undefined, core.Container.fromPartial({ name: 'a' }), 'livenessProbe.tcpSocket.port')).toThrow(/livenessProbe\.tcpSocket\.port: Required value/);
  });
});
