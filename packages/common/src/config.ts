// Config loading for every Berth process: command-line flags > environment > config file
// (YAML or JSON) > defaults, validated with zod. Any error names the bad key and where it came
// from (`--flag`, `$ENV`, or `file:key`), and unknown keys or flags are rejected.
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { z } from 'zod';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type OptionType = 'string' | 'number' | 'boolean' | 'list';

export interface OptionSpec {
  /** Flag name without dashes, e.g. `state-dir`. */
  flag: string;
  type: OptionType;
  env?: string;
  description: string;
  short?: string;
}

export interface LoadConfigOptions<S extends z.ZodObject> {
  /** Keys of the config object (camelCase) and how each is given on the command line/env. */
  options: Record<string, OptionSpec>;
  /** Validation and defaults; must be a strict object over the same keys. */
  schema: S;
  argv?: string[];
  env?: NodeJS.ProcessEnv;
  /** Key whose value is the config file path (default `config`). */
  configKey?: string;
}

export interface LoadedConfig<T> {
  config: T;
  /** Where each key's value came from: `flag`, `env`, `file` or `default`. */
  sources: Record<string, 'flag' | 'env' | 'file' | 'default'>;
  positionals: string[];
  help: boolean;
}

function coerce(spec: OptionSpec, raw: string, where: string): unknown {
  switch (spec.type) {
    case 'string':
      return raw;
    case 'number': {
      if (!/^-?\d+(\.\d+)?$/.test(raw.trim())) throw new ConfigError(`${where}: expected a number, got "${raw}"`);
      return Number(raw);
    }
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      throw new ConfigError(`${where}: expected true or false, got "${raw}"`);
    case 'list':
      return raw.split(',').map((s) => s.trim()).filter(Boolean);
  }
}

export function loadConfig<S extends z.ZodObject>(opts: LoadConfigOptions<S>): LoadedConfig<z.infer<S>> {
  const argv = opts.argv ?? process.argv.slice(2);
  const env = opts.env ?? process.env;
  const configKey = opts.configKey ?? 'config';
  const byFlag = new Map<string, string>();
  const parseOptions: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [key, spec] of Object.entries(opts.options)) {
    byFlag.set(spec.flag, key);
    parseOptions[spec.flag] = { type: spec.type === 'boolean' ? 'boolean' : 'string', ...(spec.short ? { short: spec.short } : {}), ...(spec.type === 'list' ? { multiple: true } : {}) };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options: parseOptions, strict: true, allowPositionals: true });
  } catch (err) {
    throw new ConfigError(`command line: ${(err as Error).message.replace(/\. To specify.*$/s, '')}`);
  }

  const merged: Record<string, unknown> = {};
  const sources: Record<string, 'flag' | 'env' | 'file' | 'default'> = {};
  const where: Record<string, string> = {};

  // The config file path itself may come from a flag or env.
  const cfgSpec = opts.options[configKey];
  const cfgPath = (cfgSpec && (parsed.values[cfgSpec.flag] as string | undefined)) ?? (cfgSpec?.env ? env[cfgSpec.env] : undefined);
  if (cfgPath) {
    let text: string;
    try {
      text = fs.readFileSync(cfgPath, 'utf8');
    } catch (err) {
      throw new ConfigError(`config file ${cfgPath}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = YAML.parse(text);
    } catch (err) {
      throw new ConfigError(`config file ${cfgPath}: ${(err as Error).message.split('\n')[0]}`);
    }
    if (doc !== null && doc !== undefined) {
      if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${cfgPath}: expected a mapping of keys to values`);
      for (const [k, v] of Object.entries(doc as Record<string, unknown>)) {
        if (!(k in opts.options) || k === configKey) {
          throw new ConfigError(`config file ${cfgPath}: unknown key "${k}" (known: ${Object.keys(opts.options).filter((x) => x !== configKey).join(', ')})`);
        }
        merged[k] = v;
        sources[k] = 'file';
        where[k] = `config file ${cfgPath}: ${k}`;
      }
    }
  }
  for (const [key, spec] of Object.entries(opts.options)) {
    if (spec.env && env[spec.env] !== undefined && env[spec.env] !== '') {
      merged[key] = coerce(spec, env[spec.env]!, `$${spec.env}`);
      sources[key] = 'env';
      where[key] = `$${spec.env}`;
    }
  }
  for (const [flag, value] of Object.entries(parsed.values)) {
    if (flag === 'help') continue;
    const key = byFlag.get(flag)!;
    const spec = opts.options[key];
    let v: unknown = value;
    if (spec.type === 'number') v = coerce(spec, String(value), `--${flag}`);
    if (spec.type === 'list') v = (value as string[]).flatMap((x) => x.split(',')).map((s) => s.trim()).filter(Boolean);
    merged[key] = v;
    sources[key] = 'flag';
    where[key] = `--${flag}`;
  }

  const result = opts.schema.strict().safeParse(merged);
  if (!result.success) {
    const issue = result.error.issues[0];
    const key = String(issue.path[0] ?? '');
    const rest = issue.path.slice(1).map(String).join('.');
    const label = where[key] ?? (key ? `config key ${key}` : 'config');
    throw new ConfigError(`${label}${rest ? `.${rest}` : ''}: ${issue.message}`);
  }
  for (const key of Object.keys(opts.options)) if (!sources[key]) sources[key] = 'default';
  return { config: result.data as z.infer<S>, sources, positionals: parsed.positionals, help: Boolean(parsed.values.help) };
}

export function usage(name: string, options: Record<string, OptionSpec>): string {
  const lines = [`Usage: ${name} [flags]`, '', 'Flags:'];
  for (const spec of Object.values(options)) {
    const env = spec.env ? ` (env ${spec.env})` : '';
    lines.push(`  --${spec.flag}${spec.type === 'boolean' ? '' : ' VALUE'}\t${spec.description}${env}`);
  }
  return lines.join('\n');
}

export { z };
