// The lean node:http2 gRPC server and client against grpc-js (the reference peer): each side
// must work with the other's standard counterpart, over a real unix socket and mutual TLS.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { credentials, loadPackageDefinition, Metadata, status, type GrpcObject, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { runtime, scheduler } from '@berth/api';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createClient } from './client';
import { fromServiceError, InvalidArgumentError, NotFoundError } from './errors';
import { createH2UnaryClient } from './h2-grpc-client';
import { serveH2, type RunningH2Server } from './h2-grpc-server';
import { checkHealth } from './health-client';
import { serve, serverStream, unary, withUnimplemented, type RunningServer } from './serve';
import { makeTestPki } from './testing-certs';

/** Status echoes the caller's x-who metadata; Explain fails with a field; QueueStatus answers only when the call is cancelled. */
function schedulerService(seen: { cancelled?: boolean; peer?: string } = {}) {
  return {
    definition: scheduler.SchedulerService,
    implementation: withUnimplemented(scheduler.SchedulerService, 'issue #7', {
      status: unary(async (_req: scheduler.StatusRequest, call) => {
        seen.peer = call.getPeer();
        return scheduler.StatusResponse.fromPartial({ leader: true, leaderIdentity: String(call.metadata.get('x-who')[0] ?? ''), profiles: ['default-scheduler', 'é ü'], scheduledCount: 42 });
      }),
      explain: unary(async () => { throw new InvalidArgumentError('profile', 'no profile "x%y" (ünknown)'); }),
      queueStatus: (call: { on(ev: 'cancelled', f: () => void): void }) => { call.on('cancelled', () => { seen.cancelled = true; }); },
    }),
  };
}

function call<T>(fn: (cb: (e: ServiceError | null, r: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((e, r) => (e ? reject(e) : resolve(r))));
}

describe('serveH2 (lean node:http2 gRPC server)', () => {
  let dir: string;
  let running: RunningH2Server | RunningServer | undefined;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-h2-')); });
  afterEach(async () => {
    await running?.shutdown(0);
    running = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves grpc-js clients on a 0600 unix socket: health, unary results, metadata, error statuses with details and fields', async () => {
    const sock = path.join(dir, 'svc.sock');
    const seen: { peer?: string } = {};
    const r = await serveH2({ listen: `unix://${sock}`, services: [schedulerService(seen)] });
    running = r;
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect(await checkHealth(`unix://${sock}`)).toBe('NOT_SERVING');
    r.setServing(true);
    expect(await checkHealth(`unix://${sock}`, 'berth.scheduler.v1.Scheduler')).toBe('SERVING');
    expect(await checkHealth(`unix://${sock}`, 'no.such.Service')).toMatch(/SERVICE_UNKNOWN|NOT_FOUND|UNREACHABLE/);
    const client = createClient(scheduler.SchedulerClient, { target: `unix://${sock}` });
    try {
      const md = new Metadata();
      md.set('x-who', 'kubelet');
      const res = await call<scheduler.StatusResponse>((cb) => client.status({}, md, cb));
      expect(res).toEqual(scheduler.StatusResponse.fromPartial({ leader: true, leaderIdentity: 'kubelet', profiles: ['default-scheduler', 'é ü'], scheduledCount: 42 }));
      expect(seen.peer).toBe('unix:');
      const e1 = (await call((cb) => client.explain({}, cb)).catch((e: unknown) => e)) as ServiceError;
      expect(e1.code).toBe(status.INVALID_ARGUMENT);
      expect(e1.details).toBe('profile: no profile "x%y" (ünknown)');
      expect((fromServiceError(e1) as InvalidArgumentError).field).toBe('profile');
    } finally {
      client.close();
    }
  });

  it('answers UNIMPLEMENTED for methods not built and unknown paths, as grpc-js does', async () => {
    const sock = `unix://${path.join(dir, 'svc.sock')}`;
    const impl = withUnimplemented(scheduler.SchedulerService, 'issue #7', {});
    running = await serveH2({ listen: sock, services: [{ definition: scheduler.SchedulerService, implementation: impl }] });
    const client = createClient(scheduler.SchedulerClient, { target: sock });
    try {
      const e = (await call((cb) => client.status({}, cb)).catch((x: unknown) => x)) as ServiceError;
      expect(e.code).toBe(status.UNIMPLEMENTED);
      expect(e.details).toBe('berth.scheduler.v1.Scheduler.Status is not built yet (issue #7)');
    } finally {
      client.close();
    }
    const h2 = createH2UnaryClient({ nope: { ...scheduler.SchedulerService.status, path: '/berth.scheduler.v1.Scheduler/Nope' } }, { target: sock });
    try {
      await expect(h2.nope({})).rejects.toMatchObject({ code: status.UNIMPLEMENTED, details: 'unknown method /berth.scheduler.v1.Scheduler/Nope' });
    } finally {
      h2.close();
    }
  });

  it('ends a call at its deadline with DEADLINE_EXCEEDED and tells the handler it was cancelled', async () => {
    const sock = `unix://${path.join(dir, 'svc.sock')}`;
    const seen: { cancelled?: boolean } = {};
    running = await serveH2({ listen: sock, services: [schedulerService(seen)] });
    const client = createClient(scheduler.SchedulerClient, { target: sock });
    try {
      const e = (await call((cb) => client.queueStatus(scheduler.QueueStatusRequest.fromPartial({}), { deadline: Date.now() + 300 }, cb)).catch((x: unknown) => x)) as ServiceError;
      expect(e.code).toBe(status.DEADLINE_EXCEEDED);
      await expect.poll(() => seen.cancelled, { timeout: 5000 }).toBe(true);
      // A client that gives up (RST_STREAM) cancels the call on the server as well.
      seen.cancelled = false;
      const c = client.queueStatus(scheduler.QueueStatusRequest.fromPartial({}), { deadline: Date.now() + 30_000 }, () => undefined);
      await new Promise((r) => setTimeout(r, 100));
      c.cancel();
      await expect.poll(() => seen.cancelled, { timeout: 5000 }).toBe(true);
    } finally {
      client.close();
    }
    const h2 = createH2UnaryClient(scheduler.SchedulerService, { target: sock });
    try {
      await expect(h2.queueStatus(scheduler.QueueStatusRequest.fromPartial({}), { deadlineMs: 200 })).rejects.toMatchObject({ code: status.DEADLINE_EXCEEDED });
    } finally {
      h2.close();
    }
  });

  it('streams: health Watch follows serving changes; server reflection lists every service', async () => {
    const sock = `unix://${path.join(dir, 'svc.sock')}`;
    const r = await serveH2({ listen: sock, services: [schedulerService()] });
    running = r;
    const healthDef = protoLoader.loadSync(require.resolve('grpc-health-check/proto/health/v1/health.proto'), { keepCase: true, enums: String });
    const Health = (loadPackageDefinition(healthDef) as unknown as { grpc: { health: { v1: GrpcObject } } }).grpc.health.v1.Health as ServiceClientConstructor;
    const hc = new Health(sock, credentials.createInsecure());
    const reflDef = protoLoader.loadSync(require.resolve('@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto'), { keepCase: true });
    const Refl = (loadPackageDefinition(reflDef) as unknown as { grpc: { reflection: { v1: GrpcObject } } }).grpc.reflection.v1.ServerReflection as ServiceClientConstructor;
    const rc = new Refl(sock, credentials.createInsecure());
    try {
      const statuses: string[] = [];
      const watch = hc.watch({ service: '' });
      watch.on('data', (m: { status: string }) => { statuses.push(m.status); if (statuses.length === 1) r.setServing(true); });
      watch.on('error', () => undefined);
      await expect.poll(() => statuses, { timeout: 5000 }).toEqual(['NOT_SERVING', 'SERVING']);
      watch.cancel();
      const names = await new Promise<string[]>((resolve, reject) => {
        const stream = rc.ServerReflectionInfo();
        stream.on('data', (msg: { list_services_response?: { service: { name: string }[] } }) => {
          resolve(msg.list_services_response!.service.map((s) => s.name));
          stream.end();
        });
        stream.on('error', reject);
        stream.write({ list_services: '' });
      });
      expect(names).toEqual(expect.arrayContaining(['grpc.health.v1.Health', 'berth.scheduler.v1.Scheduler', 'berth.cni.v1.NetworkService']));
    } finally {
      hc.close();
      rc.close();
    }
  });

  it('serverStream() handlers stream results and end with the error status they throw', async () => {
    const sock = `unix://${path.join(dir, 'svc.sock')}`;
    // A server-streaming method of the Health service, through the serverStream helper.
    const healthDef = protoLoader.loadSync(require.resolve('grpc-health-check/proto/health/v1/health.proto'), { keepCase: true, enums: String });
    const pkg = loadPackageDefinition(healthDef) as unknown as { grpc: { health: { v1: GrpcObject } } };
    const Health = pkg.grpc.health.v1.Health as ServiceClientConstructor;
    running = await serveH2({ listen: sock, services: [{ name: 'test.Health', definition: Health.service, implementation: {
      watch: serverStream(async function* (req: { service: string }) {
        yield { status: 'SERVING' };
        yield { status: 'NOT_SERVING' };
        throw new NotFoundError(`no service ${req.service}`);
      }),
    } }] });
    const hc = new Health(sock, credentials.createInsecure());
    try {
      const got: string[] = [];
      const err = await new Promise<ServiceError>((resolve) => {
        const s = hc.watch({ service: 'x' });
        s.on('data', (m: { status: string }) => got.push(m.status));
        s.on('error', resolve);
      });
      expect(got).toEqual(['SERVING', 'NOT_SERVING']);
      expect(err.code).toBe(status.NOT_FOUND);
      expect(err.details).toBe('no service x');
    } finally {
      hc.close();
    }
  });

  it('answers gRPC C-core (Debian python3-grpcio): health, reflection stream, error status with a percent-encoded message', async () => {
    const sock = path.join(dir, 'svc.sock');
    const r = await serveH2({ listen: `unix://${sock}`, services: [schedulerService()] });
    running = r;
    r.setServing(true);
    // Raw bytes: HealthCheckRequest{} is empty; ServerReflectionRequest{list_services: ""} is field 7.
    const py = [
      'import grpc, sys',
      "ch = grpc.insecure_channel('unix://' + sys.argv[1])",
      "print('health', ch.unary_unary('/grpc.health.v1.Health/Check')(b'', timeout=10).hex())",
      "resps = list(ch.stream_stream('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo')(iter([b'\\x3a\\x00']), timeout=10))",
      "print('reflection', len(resps), b'berth.scheduler.v1.Scheduler' in resps[0])",
      'try:',
      "    ch.unary_unary('/berth.scheduler.v1.Scheduler/Explain')(b'', timeout=10)",
      'except grpc.RpcError as e:',
      "    print('explain', e.code().name, e.details())",
    ].join('\n');
    // Async: the server answers from this process's event loop.
    const out = await new Promise<string>((resolve, reject) => execFile('/usr/bin/python3', ['-c', py, sock], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))));
    expect(out.trim().split('\n')).toEqual(['health 0801', 'reflection 1 True', 'explain INVALID_ARGUMENT profile: no profile "x%y" (ünknown)']);
  });

  it('the lean client calls grpc-js and lean servers alike: results, metadata, mapped errors; UNAVAILABLE when nothing listens', async () => {
    for (const kind of ['grpc-js', 'lean'] as const) {
      const sock = `unix://${path.join(dir, `${kind}.sock`)}`;
      const r = kind === 'lean' ? await serveH2({ listen: sock, services: [schedulerService()] }) : await serve({ listen: sock, services: [schedulerService()] });
      try {
        const c = createH2UnaryClient(scheduler.SchedulerService, { target: sock });
        try {
          const md = new Metadata();
          md.set('x-who', kind);
          expect(await c.status({}, { metadata: md })).toMatchObject({ leader: true, leaderIdentity: kind, profiles: ['default-scheduler', 'é ü'], scheduledCount: 42 });
          const e = await c.explain(scheduler.ExplainRequest.fromPartial({})).catch((x: unknown) => x);
          expect(e).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'profile: no profile "x%y" (ünknown)' });
          expect((fromServiceError(e) as InvalidArgumentError).field).toBe('profile');
        } finally {
          c.close();
        }
      } finally {
        await r.shutdown(0);
      }
    }
    // A server restarted on the same socket: the next call connects again.
    const sock = `unix://${path.join(dir, 'restart.sock')}`;
    const c = createH2UnaryClient(scheduler.SchedulerService, { target: sock });
    try {
      let r = await serveH2({ listen: sock, services: [schedulerService()] });
      expect((await c.status({})).scheduledCount).toBe(42);
      await r.shutdown(0);
      await expect(c.status({})).rejects.toMatchObject({ code: status.UNAVAILABLE });
      r = await serveH2({ listen: sock, services: [schedulerService()] });
      try {
        expect((await c.status({})).scheduledCount).toBe(42);
      } finally {
        await r.shutdown(0);
      }
    } finally {
      c.close();
    }
    const gone = createH2UnaryClient(scheduler.SchedulerService, { target: `unix://${path.join(dir, 'nothing.sock')}` });
    await expect(gone.status({})).rejects.toMatchObject({ code: status.UNAVAILABLE });
    gone.close();
  });

  it('the lean client streams server-streaming calls from grpc-js and lean servers: messages in order, the end, an error after messages, cancel on break', async () => {
    // A server-streaming method made from the scheduler's messages: `scheduledCount` 0..n-1.
    const def = { ...scheduler.SchedulerService.status, path: '/test.Stream/Count', responseStream: true as const };
    const definition = { count: def };
    for (const kind of ['grpc-js', 'lean'] as const) {
      const sock = `unix://${path.join(dir, `stream-${kind}.sock`)}`;
      let cancelled = false;
      const implementation = {
        count: serverStream(async function* (_req: scheduler.StatusRequest, call, signal) {
          const n = Number(call.metadata.get('x-n')[0] ?? 3);
          const big = call.metadata.get('x-small').length === 0;
          for (let i = 0; i < n; i++) yield scheduler.StatusResponse.fromPartial({ scheduledCount: i, profiles: ['x'.repeat(big ? i * 40_000 : 10)] });
          if (call.metadata.get('x-fail').length > 0) throw new InvalidArgumentError('profile', 'no such profile');
          if (call.metadata.get('x-hang').length > 0) {
            if (!signal.aborted) await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
            cancelled = true;
          }
        }),
      };
      const r = kind === 'lean' ? await serveH2({ listen: sock, services: [{ definition, implementation }] }) : await serve({ listen: sock, services: [{ definition, implementation }] });
      const c = createH2UnaryClient(definition, { target: sock });
      const md = (k: string, v: string): Metadata => { const m = new Metadata(); m.set(k, v); return m; };
      try {
        // Messages larger than one DATA frame and several in one frame are both cut right.
        const got: number[] = [];
        for await (const m of c.count({}, { metadata: md('x-n', '5') })) {
          expect(m.profiles[0]).toHaveLength(m.scheduledCount * 40_000);
          got.push(m.scheduledCount);
        }
        expect(got).toEqual([0, 1, 2, 3, 4]);
        // Many more than the client holds unread: it pauses the stream and resumes it, in order.
        const many = new Metadata();
        many.set('x-n', '1000');
        many.set('x-small', '1');
        const seenMany: number[] = [];
        for await (const m of c.count({}, { metadata: many })) {
          seenMany.push(m.scheduledCount);
          if (seenMany.length % 100 === 0) await new Promise((res) => setTimeout(res, 5));
        }
        expect(seenMany).toEqual(Array.from({ length: 1000 }, (_, i) => i));
        const seen: number[] = [];
        const err = await (async () => { for await (const m of c.count({}, { metadata: md('x-fail', '1') })) seen.push(m.scheduledCount); })().catch((e: unknown) => e);
        expect(seen).toEqual([0, 1, 2]);
        expect(err).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'profile: no such profile' });
        // Leaving the loop cancels the call on the server.
        for await (const m of c.count({}, { metadata: md('x-hang', '1') })) if (m.scheduledCount === 1) break;
        for (let i = 0; i < 50 && !cancelled; i++) await new Promise((res) => setTimeout(res, 20));
        expect(cancelled).toBe(true);
        // A deadline ends a call that runs past it.
        const late = await (async () => { for await (const _ of c.count({}, { metadata: md('x-hang', '1'), deadlineMs: 100 })) { /* drain */ } })().catch((e: unknown) => e);
        expect(late).toMatchObject({ code: status.DEADLINE_EXCEEDED });
      } finally {
        c.close();
        await r.shutdown(0);
      }
    }
    const gone = createH2UnaryClient(definition, { target: `unix://${path.join(dir, 'nothing.sock')}` });
    await expect((async () => { for await (const _ of gone.count({})) { /* none */ } })()).rejects.toMatchObject({ code: status.UNAVAILABLE });
    gone.close();
  });

  it('pause() holds a client-streaming call back through HTTP/2 flow control until resume()', async () => {
    const sock = path.join(dir, 'img.sock');
    let got = 0;
    let paused: { resume(): void } | undefined;
    const chunks = 64;
    running = await serveH2({ listen: `unix://${sock}`, services: [{
      definition: runtime.ImageServiceService,
      implementation: withUnimplemented(runtime.ImageServiceService, 'test', {
        importImage: (c: { on(ev: string, f: () => void): void; pause(): void; resume(): void }, cb: (e: null, r: runtime.ImportImageResponse) => void) => {
          c.on('data', () => { if (++got === 1) { c.pause(); paused = c; } });
          c.on('end', () => cb(null, runtime.ImportImageResponse.fromPartial({ images: [] })));
        },
      }),
    }] });
    const client = createClient(runtime.ImageServiceClient, { target: `unix://${sock}` });
    try {
      const answer = new Promise<void>((resolve, reject) => {
        const up = client.importImage((e) => (e ? reject(e) : resolve()));
        const chunk = Buffer.alloc(256 * 1024, 7);
        for (let i = 0; i < chunks; i++) up.write({ chunk });
        up.end();
      });
      await new Promise((r) => setTimeout(r, 500));
      // 16 MiB were written; while paused only what fits the HTTP/2 windows got through.
      expect(got).toBeLessThan(8);
      paused!.resume();
      await answer;
      expect(got).toBe(chunks);
    } finally {
      client.close();
    }
  });

  it('refuses plain TCP off loopback, a live socket twice; serves mutual TLS only to clients with a certificate', async () => {
    await expect(serveH2({ listen: '0.0.0.0:0', services: [schedulerService()] })).rejects.toThrow(/needs TLS/);
    const sock = `unix://${path.join(dir, 'svc.sock')}`;
    const first = await serveH2({ listen: sock, services: [schedulerService()] });
    await expect(serveH2({ listen: sock, services: [schedulerService()] })).rejects.toThrow(/in use by another process/);
    await first.shutdown(0);
    expect(fs.existsSync(path.join(dir, 'svc.sock'))).toBe(false);
    const pki = makeTestPki(path.join(dir, 'pki'));
    const r = await serveH2({ listen: '127.0.0.1:0', services: [schedulerService()], tls: { caFile: pki.ca, certFile: pki.serverCert, keyFile: pki.serverKey } });
    running = r;
    r.setServing(true);
    expect(await checkHealth(r.address, '', { tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey } })).toBe('SERVING');
    expect(await checkHealth(r.address, '', { tls: { caFile: pki.ca } })).toMatch(/^UNREACHABLE/);
    expect(await checkHealth(r.address, '', { insecureLoopback: true })).toMatch(/^UNREACHABLE/);
    const withCert = createH2UnaryClient(scheduler.SchedulerService, { target: r.address, tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey } });
    const noCert = createH2UnaryClient(scheduler.SchedulerService, { target: r.address, tls: { caFile: pki.ca } });
    try {
      expect((await withCert.status({})).scheduledCount).toBe(42);
      await expect(noCert.status({}, { deadlineMs: 5000 })).rejects.toMatchObject({ code: status.UNAVAILABLE });
    } finally {
      withCert.close();
      noCert.close();
    }
  });
});
