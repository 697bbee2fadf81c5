// OCI runtime spec 1.x config.json: the types Berth reads, and a validator that rejects unknown
// or ill-typed fields with their JSON path ("linux.resources.memory.limt: unknown field").
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Mount { destination: string; type?: string; source?: string; options?: string[]; uidMappings?: IdMapping[]; gidMappings?: IdMapping[] }
export interface IdMapping { containerID: number; hostID: number; size: number }
export interface Rlimit { type: string; soft: number; hard: number }
export interface Capabilities { bounding?: string[]; effective?: string[]; inheritable?: string[]; permitted?: string[]; ambient?: string[] }
export interface User { uid: number; gid: number; umask?: number; additionalGids?: number[]; username?: string }
export interface Process {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: User;
  args?: string[];
  commandLine?: string;
  env?: string[];
  cwd: string;
  capabilities?: Capabilities;
  rlimits?: Rlimit[];
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  oomScoreAdj?: number;
  selinuxLabel?: string;
}
export interface Hook { path: string; args?: string[]; env?: string[]; timeout?: number }
export interface Hooks { prestart?: Hook[]; createRuntime?: Hook[]; createContainer?: Hook[]; startContainer?: Hook[]; poststart?: Hook[]; poststop?: Hook[] }
export interface Namespace { type: string; path?: string }
export interface DeviceRule { allow: boolean; type?: string; major?: number; minor?: number; access?: string }
export interface ThrottleDevice { major: number; minor: number; rate: number }
export interface WeightDevice { major: number; minor: number; weight?: number; leafWeight?: number }
export interface Resources {
  devices?: DeviceRule[];
  memory?: { limit?: number; reservation?: number; swap?: number; kernel?: number; kernelTCP?: number; swappiness?: number; disableOOMKiller?: boolean; useHierarchy?: boolean; checkBeforeUpdate?: boolean };
  cpu?: { shares?: number; quota?: number; burst?: number; period?: number; realtimeRuntime?: number; realtimePeriod?: number; cpus?: string; mems?: string; idle?: number };
  pids?: { limit: number };
  blockIO?: { weight?: number; leafWeight?: number; weightDevice?: WeightDevice[]; throttleReadBpsDevice?: ThrottleDevice[]; throttleWriteBpsDevice?: ThrottleDevice[]; throttleReadIOPSDevice?: ThrottleDevice[]; throttleWriteIOPSDevice?: ThrottleDevice[] };
  hugepageLimits?: Array<{ pageSize: string; limit: number }>;
  network?: { classID?: number; priorities?: Array<{ name: string; priority: number }> };
  rdma?: Record<string, { hcaHandles?: number; hcaObjects?: number }>;
  unified?: Record<string, string>;
}
export interface Device { path: string; type: string; major?: number; minor?: number; fileMode?: number; uid?: number; gid?: number }
export interface SeccompSyscall { names: string[]; action: string; errnoRet?: number; args?: Array<{ index: number; value: number; valueTwo?: number; op: string }> }
export interface Seccomp { defaultAction: string; defaultErrnoRet?: number; architectures?: string[]; flags?: string[]; listenerPath?: string; listenerMetadata?: string; syscalls?: SeccompSyscall[] }
export interface Linux {
  namespaces?: Namespace[];
  uidMappings?: IdMapping[];
  gidMappings?: IdMapping[];
  timeOffsets?: Record<string, { secs?: number; nanosecs?: number }>;
  devices?: Device[];
  cgroupsPath?: string;
  resources?: Resources;
  rootfsPropagation?: string;
  seccomp?: Seccomp;
  sysctl?: Record<string, string>;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  mountLabel?: string;
  personality?: { domain: string; flags?: string[] };
}
export interface Spec {
  ociVersion: string;
  process?: Process;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  domainname?: string;
  mounts?: Mount[];
  hooks?: Hooks;
  annotations?: Record<string, string>;
  linux?: Linux;
}

/** A config.json problem; `field` is the JSON path. Exit code and message follow runc. */
export class ConfigError extends Error {
  constructor(readonly field: string, problem: string) {
    super(`${field}: ${problem}`);
    this.name = 'ConfigError';
  }
}

type Schema =
  | 'string' | 'int' | 'uint' | 'number' | 'bool'
  | { array: Schema }
  | { map: Schema }
  | { object: Record<string, Schema>; required?: string[] };

const obj = (fields: Record<string, Schema>, required: string[] = []): Schema => ({ object: fields, required });
const arr = (s: Schema): Schema => ({ array: s });
const idMap = obj({ containerID: 'uint', hostID: 'uint', size: 'uint' }, ['containerID', 'hostID', 'size']);
const hook = obj({ path: 'string', args: arr('string'), env: arr('string'), timeout: 'int' }, ['path']);
const throttle = obj({ major: 'int', minor: 'int', rate: 'uint' }, ['major', 'minor', 'rate']);
const caps = arr('string');

const SPEC: Schema = obj(
  {
    ociVersion: 'string',
    process: obj(
      {
        terminal: 'bool',
        consoleSize: obj({ height: 'uint', width: 'uint' }),
        user: obj({ uid: 'uint', gid: 'uint', umask: 'uint', additionalGids: arr('uint'), username: 'string' }),
        args: arr('string'),
        commandLine: 'string',
        env: arr('string'),
        cwd: 'string',
        capabilities: obj({ bounding: caps, effective: caps, inheritable: caps, permitted: caps, ambient: caps }),
        rlimits: arr(obj({ type: 'string', soft: 'uint', hard: 'uint' }, ['type', 'soft', 'hard'])),
        noNewPrivileges: 'bool',
        apparmorProfile: 'string',
        oomScoreAdj: 'int',
        selinuxLabel: 'string',
      },
      ['cwd'],
    ),
    root: obj({ path: 'string', readonly: 'bool' }, ['path']),
    hostname: 'string',
    domainname: 'string',
    mounts: arr(obj({ destination: 'string', type: 'string', source: 'string', options: arr('string'), uidMappings: arr(idMap), gidMappings: arr(idMap) }, ['destination'])),
    hooks: obj({ prestart: arr(hook), createRuntime: arr(hook), createContainer: arr(hook), startContainer: arr(hook), poststart: arr(hook), poststop: arr(hook) }),
    annotations: { map: 'string' },
    linux: obj({
      namespaces: arr(obj({ type: 'string', path: 'string' }, ['type'])),
      uidMappings: arr(idMap),
      gidMappings: arr(idMap),
      timeOffsets: { map: obj({ secs: 'int', nanosecs: 'uint' }) },
      devices: arr(obj({ path: 'string', type: 'string', major: 'int', minor: 'int', fileMode: 'uint', uid: 'uint', gid: 'uint' }, ['path', 'type'])),
      cgroupsPath: 'string',
      resources: obj({
        devices: arr(obj({ allow: 'bool', type: 'string', major: 'int', minor: 'int', access: 'string' }, ['allow'])),
        memory: obj({ limit: 'int', reservation: 'int', swap: 'int', kernel: 'int', kernelTCP: 'int', swappiness: 'uint', disableOOMKiller: 'bool', useHierarchy: 'bool', checkBeforeUpdate: 'bool' }),
        cpu: obj({ shares: 'uint', quota: 'int', burst: 'uint', period: 'uint', realtimeRuntime: 'int', realtimePeriod: 'uint', cpus: 'string', mems: 'string', idle: 'int' }),
        pids: obj({ limit: 'int' }, ['limit']),
        blockIO: obj({
          weight: 'uint', leafWeight: 'uint',
          weightDevice: arr(obj({ major: 'int', minor: 'int', weight: 'uint', leafWeight: 'uint' }, ['major', 'minor'])),
          throttleReadBpsDevice: arr(throttle), throttleWriteBpsDevice: arr(throttle),
          throttleReadIOPSDevice: arr(throttle), throttleWriteIOPSDevice: arr(throttle),
        }),
        hugepageLimits: arr(obj({ pageSize: 'string', limit: 'uint' }, ['pageSize', 'limit'])),
        network: obj({ classID: 'uint', priorities: arr(obj({ name: 'string', priority: 'uint' }, ['name', 'priority'])) }),
        rdma: { map: obj({ hcaHandles: 'uint', hcaObjects: 'uint' }) },
        unified: { map: 'string' },
      }),
      rootfsPropagation: 'string',
      seccomp: obj({
        defaultAction: 'string', defaultErrnoRet: 'uint', architectures: arr('string'), flags: arr('string'),
        listenerPath: 'string', listenerMetadata: 'string',
        syscalls: arr(obj({ names: arr('string'), action: 'string', errnoRet: 'uint', args: arr(obj({ index: 'uint', value: 'number', valueTwo: 'number', op: 'string' }, ['index', 'value', 'op'])) }, ['names', 'action'])),
      }, ['defaultAction']),
      sysctl: { map: 'string' },
      maskedPaths: arr('string'),
      readonlyPaths: arr('string'),
      mountLabel: 'string',
      personality: obj({ domain: 'string', flags: arr('string') }, ['domain']),
    }),
  },
  ['ociVersion'],
);

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

function check(value: unknown, schema: Schema, at: string): void {
  if (typeof schema === 'string') {
    const ok =
      schema === 'string' ? typeof value === 'string'
      : schema === 'bool' ? typeof value === 'boolean'
      : schema === 'number' ? typeof value === 'number' && Number.isFinite(value)
      : typeof value === 'number' && Number.isInteger(value) && (schema === 'int' || value >= 0);
    if (!ok) throw new ConfigError(at, `expected ${schema === 'uint' ? 'a non-negative integer' : schema === 'int' ? 'an integer' : `a ${schema === 'bool' ? 'boolean' : schema}`}, got ${describe(value)}`);
    return;
  }
  if ('array' in schema) {
    if (!Array.isArray(value)) throw new ConfigError(at, `expected an array, got ${describe(value)}`);
    value.forEach((item, i) => check(item, schema.array, `${at}[${i}]`));
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(at, `expected an object, got ${describe(value)}`);
  const record = value as Record<string, unknown>;
  if ('map' in schema) {
    for (const [k, v] of Object.entries(record)) check(v, schema.map, `${at}.${k}`);
    return;
  }
  for (const [k, v] of Object.entries(record)) {
    const sub = schema.object[k];
    const where = at === '' ? k : `${at}.${k}`;
    if (sub === undefined) throw new ConfigError(where, 'unknown field');
    if (v === null) continue;
    check(v, sub, where);
  }
  for (const k of schema.required ?? []) {
    if (record[k] === undefined || record[k] === null) throw new ConfigError(at === '' ? k : `${at}.${k}`, 'required field is missing');
  }
}

const NAMESPACE_TYPES = new Set(['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time']);
const PROPAGATION = new Set(['', 'private', 'rprivate', 'slave', 'rslave', 'shared', 'rshared', 'unbindable', 'runbindable']);

/** Validates a parsed config.json; returns it typed. Throws ConfigError naming the field. */
export function validateSpec(raw: unknown): Spec {
  check(raw, SPEC, '');
  const spec = raw as Spec;
  if (!/^1\.\d+\.\d+/.test(spec.ociVersion)) throw new ConfigError('ociVersion', `unsupported version '${spec.ociVersion}' (expected 1.x.y)`);
  const p = spec.process;
  if (p !== undefined) {
    if (p.args === undefined || p.args.length === 0) throw new ConfigError('process.args', 'must not be empty');
    if (!p.cwd.startsWith('/')) throw new ConfigError('process.cwd', `must be an absolute path, got '${p.cwd}'`);
    for (const [i, e] of (p.env ?? []).entries()) if (!e.includes('=')) throw new ConfigError(`process.env[${i}]`, `expected KEY=value, got '${e}'`);
  }
  const seen = new Set<string>();
  for (const [i, ns] of (spec.linux?.namespaces ?? []).entries()) {
    if (!NAMESPACE_TYPES.has(ns.type)) throw new ConfigError(`linux.namespaces[${i}].type`, `unknown namespace type '${ns.type}'`);
    if (seen.has(ns.type)) throw new ConfigError(`linux.namespaces[${i}].type`, `duplicate namespace '${ns.type}'`);
    seen.add(ns.type);
    if (ns.path !== undefined && !ns.path.startsWith('/')) throw new ConfigError(`linux.namespaces[${i}].path`, `must be an absolute path, got '${ns.path}'`);
  }
  const userNs = spec.linux?.namespaces?.some((n) => n.type === 'user' && n.path === undefined) ?? false;
  for (const key of ['uidMappings', 'gidMappings'] as const) {
    const maps = spec.linux?.[key];
    if (maps !== undefined && maps.length > 0 && !userNs) throw new ConfigError(`linux.${key}`, 'mappings need a new user namespace (linux.namespaces has no user entry)');
    for (const [i, m] of (maps ?? []).entries()) if (m.size === 0) throw new ConfigError(`linux.${key}[${i}].size`, 'must be at least 1');
    if (userNs && (maps === undefined || maps.length === 0)) throw new ConfigError(`linux.${key}`, 'a new user namespace needs uid and gid mappings');
  }
  const prop = spec.linux?.rootfsPropagation;
  if (prop !== undefined && !PROPAGATION.has(prop)) throw new ConfigError('linux.rootfsPropagation', `unknown propagation '${prop}'`);
  for (const [i, m] of (spec.mounts ?? []).entries()) {
    if (!m.destination.startsWith('/')) throw new ConfigError(`mounts[${i}].destination`, `must be an absolute path, got '${m.destination}'`);
  }
  for (const [k, v] of Object.entries(spec.linux?.timeOffsets ?? {})) {
    if (k !== 'monotonic' && k !== 'boottime') throw new ConfigError(`linux.timeOffsets.${k}`, 'unknown clock (expected monotonic or boottime)');
    if ((v.nanosecs ?? 0) >= 1e9) throw new ConfigError(`linux.timeOffsets.${k}.nanosecs`, 'must be below 1000000000');
  }
  return spec;
}

/** Reads and validates <bundle>/config.json. */
export function loadSpec(bundle: string): Spec {
  const file = path.join(bundle, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('config.json', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('config.json', `invalid JSON: ${(err as Error).message}`);
  }
  return validateSpec(raw);
}
