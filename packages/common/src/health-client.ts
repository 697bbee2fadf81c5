// A client for grpc.health.v1.Health, used by `berth up`, tests and the kubelet's dependency checks.
import { makeGenericClientConstructor, type Client, type ServiceError } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { createClient, type ClientOptions } from './client';

const HealthClient = makeGenericClientConstructor(healthService as never, 'grpc.health.v1.Health') as unknown as new (
  ...args: ConstructorParameters<typeof Client>
) => Client & {
  check(req: { service: string }, opts: { deadline: number }, cb: (err: ServiceError | null, res: { status: string | number }) => void): void;
};

const NAMES = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

/** Returns SERVING / NOT_SERVING / SERVICE_UNKNOWN / UNKNOWN, or `UNREACHABLE: <reason>`. */
export async function checkHealth(target: string, service = '', opts: Omit<ClientOptions, 'target'> & { timeoutMs?: number } = {}): Promise<string> {
  const client = createClient(HealthClient, { ...opts, target });
  try {
    return await new Promise<string>((resolve) => {
      client.check({ service }, { deadline: Date.now() + (opts.timeoutMs ?? 2000) }, (err, res) => {
        if (err) resolve(`UNREACHABLE: ${err.details || err.message}`);
        else resolve(typeof res.status === 'number' ? NAMES[res.status] ?? String(res.status) : String(res.status));
      });
    });
  } finally {
    client.close();
  }
}

/** Polls until the target reports SERVING or the timeout passes; returns the last status. */
export async function waitServing(target: string, timeoutMs = 30_000, service = ''): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = await checkHealth(target, service, { timeoutMs: 1000 });
    if (last === 'SERVING') return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}
