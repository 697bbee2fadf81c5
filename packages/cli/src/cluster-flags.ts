// Flag parsing shared by `berth up`, `berth init` and `berth join`: strict (an unknown flag or a
// bad value is an error that names the flag), with the etcd and duration flags read one way.
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class CommandUsageError extends Error {}

type Options = Record<string, { type: 'string' | 'boolean'; short?: string }>;
export type FlagValues<O extends Options> = { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string } & { help?: boolean };

/** Parses `args` strictly; `--help`/`-h` is always accepted. No positionals. */
export function parseFlags<O extends Options>(args: string[], options: O): FlagValues<O> {
  try {
    const r = parseArgs({ args, allowPositionals: true, strict: true, options: { ...options, help: { type: 'boolean', short: 'h' } } as ParseArgsConfig['options'] });
    if (r.positionals.length) throw new CommandUsageError(`unexpected argument "${r.positionals[0]}"`);
    return r.values as FlagValues<O>;
  } catch (e) {
    if (e instanceof CommandUsageError) throw e;
    throw new CommandUsageError((e as Error).message.replace(/\. To specify a positional.*$/s, ''));
  }
}

/** "300" (seconds), "300s", "5m", "1h", and Go-style sums such as "1m30s" -> ms. */
export function parseDuration(v: string, flag: string): number {
  const t = v.trim();
  if (/^\d+$/.test(t)) return Number(t) * 1000;
  if (!/^(?:\d+(?:ms|s|m|h))+$/.test(t)) throw new CommandUsageError(`${flag}: expected a duration such as 300s, 5m or 1m30s, got "${v}"`);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return [...t.matchAll(/(\d+)(ms|s|m|h)/g)].reduce((sum, m) => sum + Number(m[1]) * unit[m[2]]!, 0);
}

export function parseInteger(s: string, flag: string, min: number, max: number): number {
  if (!/^\d+$/.test(s) || Number(s) < min || Number(s) > max) throw new CommandUsageError(`${flag}: expected a whole number from ${min} to ${max}, got "${s}"`);
  return Number(s);
}

export const ETCD_FLAGS = { 'etcd-members': { type: 'string' }, 'etcd-endpoints': { type: 'string' } } as const;

/** --etcd-members (a local cluster) or --etcd-endpoints (an existing one), not both. */
export function parseEtcdFlags(v: { 'etcd-members'?: string; 'etcd-endpoints'?: string }): { etcdMembers?: number; etcdEndpoints?: string[] } {
  const o: { etcdMembers?: number; etcdEndpoints?: string[] } = {};
  if (v['etcd-members'] !== undefined) o.etcdMembers = parseInteger(v['etcd-members'], '--etcd-members', 1, 7);
  if (v['etcd-endpoints'] !== undefined) {
    if (o.etcdMembers !== undefined) throw new CommandUsageError('--etcd-members and --etcd-endpoints exclude each other (members are for the local etcd)');
    const eps = v['etcd-endpoints'].split(',').map((s) => s.trim()).filter(Boolean);
    for (const e of eps) if (!/^https?:\/\/[^/\s]+:\d+\/?$/.test(e)) throw new CommandUsageError(`--etcd-endpoints: expected http://host:port URLs, got "${e}"`);
    if (!eps.length) throw new CommandUsageError('--etcd-endpoints: expected at least one URL');
    o.etcdEndpoints = eps;
  }
  return o;
}

export function parseNetwork(v: string): 'bridge' | 'routed' {
  if (v !== 'bridge' && v !== 'routed') throw new CommandUsageError(`--network: expected bridge or routed, got "${v}"`);
  return v;
}
