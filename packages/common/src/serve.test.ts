import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { credentials, loadPackageDefinition, status, type ServiceError, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { scheduler } from '@berth/api';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createClient } from './client';
import { NotFoundError } from './errors';
import { checkHealth } from './health-client';
import { serve, unary, withUnimplemented, type RunningServer } from './serve';
import { makeTestPki } from './testing-certs';

const schedulerService = () => ({
  definition: scheduler.SchedulerService,
  implementation: withUnimplemented(scheduler.SchedulerService, 'issue #7', {
    explain: unary(async () => { throw new NotFoundError('pod "default/web" not found'); }),
  }),
});

function call<T>(fn: (cb: (e: ServiceError | null, r: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((e, r) => (e ? reject(e) : resolve(r))));
}

describe('serve', () => {
  let dir: string;
  let running: RunningServer | undefined;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-serve-')); });
  afterEach(async () => {
    await running?.shutdown(0);
    running = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves health on a 0600 unix socket, NOT_SERVING until told, and removes the socket on shutdown', async () => {
    const sock = path.join(dir, 'svc.sock');
    running = await serve({ listen: `unix://${sock}`, services: [schedulerService()] });
    expect(fs.statSync(sock).mode & 0o777).toBe(0o600);
    expect(await checkHealth(`unix://${sock}`)).toBe('NOT_SERVING');
    running.setServing(true);
    expect(await checkHealth(`unix://${sock}`)).toBe('SERVING');
    expect(await checkHealth(`unix://${sock}`, 'berth.scheduler.v1.Scheduler')).toBe('SERVING');
    expect(await checkHealth(`unix://${sock}`, 'no.such.Service')).toMatch(/UNREACHABLE: .*|SERVICE_UNKNOWN/);
    await running.shutdown(0);
    running = undefined;
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('answers UNIMPLEMENTED naming the issue, and maps domain errors to status codes', async () => {
    const sock = `unix://${path.join(dir, 'svc.sock')}`;
    running = await serve({ listen: sock, services: [schedulerService()] });
    const client = createClient(scheduler.SchedulerClient, { target: sock });
    try {
      const e1 = await call((cb) => client.status({}, cb)).catch((e: ServiceError) => e);
      expect((e1 as ServiceError).code).toBe(status.UNIMPLEMENTED);
      expect((e1 as ServiceError).details).toBe('berth.scheduler.v1.Scheduler.Status is not built yet (issue #7)');
      const e2 = await call((cb) => client.explain({}, cb)).catch((e: ServiceError) => e);
      expect((e2 as ServiceError).code).toBe(status.NOT_FOUND);
      expect((e2 as ServiceError).details).toBe('pod "default/web" not found');
    } finally {
      client.close();
    }
  });

  it.each(['v1', 'v1alpha'] as const)('lists every service and describes a file through server reflection %s (built on first use)', async (v) => {
    const sock = `unix://${path.join(dir, 'svc.sock')}`;
    running = await serve({ listen: sock, services: [schedulerService()] });
    const reflProto = require.resolve(`@grpc/reflection/build/proto/grpc/reflection/${v}/reflection.proto`);
    const def = protoLoader.loadSync(reflProto, { keepCase: true });
    const pkg = loadPackageDefinition(def) as unknown as { grpc: { reflection: Record<string, GrpcObject> } };
    const Ctor = pkg.grpc.reflection[v]!.ServerReflection as ServiceClientConstructor;
    const client = new Ctor(sock, credentials.createInsecure());
    try {
      const answers = await new Promise<Array<Record<string, unknown>>>((resolve, reject) => {
        const got: Array<Record<string, unknown>> = [];
        const stream = client.ServerReflectionInfo();
        stream.on('data', (msg: Record<string, unknown>) => {
          got.push(msg);
          if (got.length === 2) { resolve(got); stream.end(); }
        });
        stream.on('error', reject);
        stream.write({ list_services: '' });
        stream.write({ file_containing_symbol: 'berth.scheduler.v1.Scheduler' });
      });
      const names = (answers[0]!.list_services_response as { service: { name: string }[] }).service.map((s) => s.name);
      expect(names).toEqual(expect.arrayContaining(['grpc.health.v1.Health', 'berth.scheduler.v1.Scheduler', 'berth.store.v1.Store', 'berth.runtime.v1.RuntimeService']));
      const files = (answers[1]!.file_descriptor_response as { file_descriptor_proto: Buffer[] }).file_descriptor_proto;
      expect(files.length).toBeGreaterThan(0);
      expect(Buffer.concat(files).toString('latin1')).toContain('berth.scheduler.v1');
    } finally {
      client.close();
    }
  });

  it('refuses a second server on a live socket and replaces a stale one', async () => {
    const sock = `unix://${path.join(dir, 'svc.sock')}`;
    running = await serve({ listen: sock, services: [schedulerService()] });
    await expect(serve({ listen: sock, services: [schedulerService()] })).rejects.toThrow(/in use by another process/);
    await running.server.forceShutdown();
    running = undefined;
    // the socket file is still there (as after a crash): the next server takes it over
    running = await serve({ listen: sock, services: [schedulerService()] });
    running.setServing(true);
    expect(await checkHealth(sock)).toBe('SERVING');
  });

  it('refuses plain TCP off loopback, and serves mutual TLS to clients with a certificate only', async () => {
    await expect(serve({ listen: '0.0.0.0:0', services: [schedulerService()] })).rejects.toThrow(/needs TLS/);
    await expect(serve({ listen: '0.0.0.0:0', insecureLoopback: true, services: [schedulerService()] })).rejects.toThrow(/needs TLS/);
    const pki = makeTestPki(path.join(dir, 'pki'));
    running = await serve({
      listen: '127.0.0.1:0',
      services: [schedulerService()],
      tls: { caFile: pki.ca, certFile: pki.serverCert, keyFile: pki.serverKey },
    });
    running.setServing(true);
    const target = running.address;
    expect(await checkHealth(target, '', { tls: { caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey } })).toBe('SERVING');
    expect(await checkHealth(target, '', { tls: { caFile: pki.ca } })).toMatch(/^UNREACHABLE/);
    expect(await checkHealth(target, '', { insecureLoopback: true })).toMatch(/^UNREACHABLE/);
  });
});
