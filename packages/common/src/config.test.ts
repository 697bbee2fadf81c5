import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, z, type OptionSpec } from './config';
import { loadServiceConfig } from './service-main';

const options: Record<string, OptionSpec> = {
  config: { flag: 'config', type: 'string', env: 'T_CONFIG', description: 'file' },
  listen: { flag: 'listen', type: 'string', env: 'T_LISTEN', description: 'addr' },
  workers: { flag: 'workers', type: 'number', env: 'T_WORKERS', description: 'n' },
  verbose: { flag: 'verbose', type: 'boolean', env: 'T_VERBOSE', description: 'v' },
  peers: { flag: 'peers', type: 'list', env: 'T_PEERS', description: 'p' },
};
const schema = z.object({
  config: z.string().optional(),
  listen: z.string().default('unix:///run/x.sock'),
  workers: z.number().int().min(1).default(4),
  verbose: z.boolean().default(false),
  peers: z.array(z.string()).default([]),
});

describe('loadConfig', () => {
  let dir: string | undefined;
  afterEach(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); dir = undefined; });
  const file = (text: string) => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-config-'));
    const p = path.join(dir, 'c.yaml');
    fs.writeFileSync(p, text);
    return p;
  };

  it('takes flags over env over file over defaults', () => {
    const p = file('listen: file:1\nworkers: 2\nverbose: true\n');
    const r = loadConfig({ options, schema, argv: ['--config', p, '--listen', 'flag:1'], env: { T_LISTEN: 'env:1', T_WORKERS: '3' } });
    expect(r.config).toEqual({ config: p, listen: 'flag:1', workers: 3, verbose: true, peers: [] });
    expect(r.sources).toMatchObject({ listen: 'flag', workers: 'env', verbose: 'file', peers: 'default' });
  });

  it('splits lists from flags and env', () => {
    expect(loadConfig({ options, schema, argv: ['--peers', 'a,b', '--peers', 'c'], env: {} }).config.peers).toEqual(['a', 'b', 'c']);
    expect(loadConfig({ options, schema, argv: [], env: { T_PEERS: 'x, y' } }).config.peers).toEqual(['x', 'y']);
  });

  it.each([
    ['an unknown flag', ['--bogus', '1'], {}, undefined, /command line: Unknown option '--bogus'/],
    ['a non-number flag', ['--workers', 'many'], {}, undefined, /--workers: expected a number, got "many"/],
    ['a bad env boolean', [], { T_VERBOSE: 'maybe' }, undefined, /\$T_VERBOSE: expected true or false/],
    ['a schema violation from a flag', ['--workers', '0'], {}, undefined, /^--workers: Too small/],
    ['an unknown key in the file', [], {}, 'listen: a\nlisen: b\n', /unknown key "lisen"/],
    ['a wrong type in the file', [], {}, 'workers: lots\n', /config file .*c\.yaml: workers: Invalid input: expected number/],
    ['malformed YAML', [], {}, 'workers: [1,\n', /config file .*c\.yaml: /],
    ['a file that is a list', [], {}, '- a\n- b\n', /expected a mapping/],
  ])('rejects %s with a message naming it', (_n, argv, env, text, re) => {
    const a = [...(argv as string[])];
    if (text) a.push('--config', file(text as string));
    expect(() => loadConfig({ options, schema, argv: a, env: env as NodeJS.ProcessEnv })).toThrow(re as RegExp);
    expect(() => loadConfig({ options, schema, argv: a, env: env as NodeJS.ProcessEnv })).toThrow(ConfigError);
  });

  it('reports a missing config file', () => {
    expect(() => loadConfig({ options, schema, argv: ['--config', '/nonexistent/berth.yaml'], env: {} })).toThrow('config file /nonexistent/berth.yaml: no such file');
  });
});

describe('service config', () => {
  const svc = { name: 'demo', setup: () => ({ services: [] }) };
  it('defaults the socket and state dir from BERTH_RUN_DIR and BERTH_STATE_DIR', () => {
    const { config } = loadServiceConfig(svc, [], { BERTH_RUN_DIR: '/tmp/r', BERTH_STATE_DIR: '/tmp/s' });
    expect(config.listen).toBe('unix:///tmp/r/demo.sock');
    expect(config.stateDir).toBe('/tmp/s/demo');
  });
  it('rejects a bad --listen and a relative --state-dir, naming the flag', () => {
    expect(() => loadServiceConfig(svc, ['--listen', 'nowhere'], {})).toThrow(/^--listen: expected unix:\/\/\/absolute\/path or host:port/);
    expect(() => loadServiceConfig(svc, ['--state-dir', 'rel/dir'], {})).toThrow(/^--state-dir: must be an absolute path/);
    expect(() => loadServiceConfig(svc, ['--log-level', 'loud'], {})).toThrow(/^--log-level: Invalid option/);
  });
});
