// JSON logging (pino) for every long-running Berth process.
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, opts: { level?: string; destination?: number | string } = {}): Logger {
  const level = opts.level ?? process.env.BERTH_LOG_LEVEL ?? 'info';
  const dest = pino.destination({ dest: opts.destination ?? 2, sync: true });
  return pino({ name, level, base: { service: name, pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}
