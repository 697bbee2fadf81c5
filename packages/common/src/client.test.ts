import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { scheduler } from '@berth/api';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createClient } from './client';
import { UnavailableError } from './errors';
import { createRegistry, serveMetrics } from './metrics';
import { serve, unary, withUnimplemented, type RunningServer } from './serve';

describe('createClient', () => {
  let dir: string;
  let running: RunningServer | undefined;
  const calls = { status: 0, queueStatus: 0 };
  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-client-'));
    calls.status = 0;
    calls.queueStatus = 0;
    // Both methods fail with UNAVAILABLE on their first call and succeed after.
    running = await serve({
      listen: `unix://${path.join(dir, 's.sock')}`,
      services: [{
        definition: scheduler.SchedulerService,
        implementation: withUnimplemented(scheduler.SchedulerService, 'test', {
          status: unary(async () => {
            if (calls.status++ === 0) throw new UnavailableError('leader changing');
            return scheduler.StatusResponse.fromPartial({ leader: true });
          }),
          queueStatus: unary(async () => {
            if (calls.queueStatus++ === 0) throw new UnavailableError('leader changing');
            return scheduler.QueueStatusResponse.fromPartial({});
          }),
        }),
      }],
    });
  });
  afterEach(async () => {
    await running?.shutdown(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('retries UNAVAILABLE only for the methods named idempotent', async () => {
    const client = createClient(scheduler.SchedulerClient, {
      target: running!.address, serviceName: 'berth.scheduler.v1.Scheduler', idempotentMethods: ['Status'],
    });
    try {
      const res = await new Promise<scheduler.StatusResponse>((resolve, reject) => client.status({}, (e, r) => (e ? reject(e) : resolve(r))));
      expect(res.leader).toBe(true);
      expect(calls.status).toBe(2);
      const err = await new Promise<ServiceError | null>((resolve) => client.queueStatus(scheduler.QueueStatusRequest.fromPartial({}), (e) => resolve(e)));
      expect(err?.details).toBe('leader changing');
      expect(err?.code).toBe(status.UNAVAILABLE);
      expect(calls.queueStatus).toBe(1);
    } finally {
      client.close();
    }
  });

  it('applies the default deadline', async () => {
    const client = createClient(scheduler.SchedulerClient, { target: `unix://${path.join(dir, 'nobody-listens.sock')}`, defaultDeadlineMs: 300 });
    const t0 = Date.now();
    try {
      const err = await new Promise<ServiceError | null>((resolve) => client.status({}, (e) => resolve(e)));
      expect([status.DEADLINE_EXCEEDED, status.UNAVAILABLE]).toContain(err?.code);
      expect(Date.now() - t0).toBeLessThan(20_000); // bounded by the deadline, not hanging
    } finally {
      client.close();
    }
  });

  it('refuses plain TCP to a non-loopback target', () => {
    expect(() => createClient(scheduler.SchedulerClient, { target: '10.0.0.1:443' })).toThrow(/TCP needs TLS/);
  });
});

describe('metrics', () => {
  it('serves Prometheus text with the service label on /metrics', async () => {
    const reg = createRegistry('test-svc');
    const srv = await serveMetrics(reg, '127.0.0.1:0');
    try {
      const port = (srv.address() as { port: number }).port;
      const body = await new Promise<{ code: number; text: string }>((resolve, reject) => {
        http.get(`http://127.0.0.1:${port}/metrics`, (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ code: res.statusCode!, text }));
        }).on('error', reject);
      });
      expect(body.code).toBe(200);
      expect(body.text).toMatch(/^process_cpu_user_seconds_total\{service="test-svc"\} /m);
    } finally {
      srv.close();
    }
  });
});
