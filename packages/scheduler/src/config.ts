// The scheduler configuration file (KubeSchedulerConfiguration's shape): profiles chosen by
// spec.schedulerName, each enabling/disabling plugins per extension point with weights and
// args, plus extenders. Every mistake is reported with the path of the offending key.
import * as fs from 'node:fs';
import YAML from 'yaml';
import { InvalidArgumentError, z } from '@berth/common';
import { EXTENSION_POINTS, type ExtensionPoint } from './framework/interfaces';
import { DEFAULT_PLUGINS, inTreeRegistry, type PluginRef, type Registry } from './framework/registry';
import { DEFAULT_SCHEDULER_NAME } from './framework/types';

const pluginRef = z.object({ name: z.string().min(1), weight: z.number().optional() }).strict();
const pluginSet = z.object({ enabled: z.array(pluginRef).default([]), disabled: z.array(pluginRef).default([]) }).strict();
const pluginsSchema = z.object(Object.fromEntries([...EXTENSION_POINTS, 'multiPoint'].map((p) => [p, pluginSet.optional()]))).strict();

const extenderSchema = z.object({
  /** unix:///path or host:port of a berth.scheduler.v1.Extender server. */
  address: z.string().min(1),
  filterVerb: z.boolean().default(false),
  prioritizeVerb: z.boolean().default(false),
  bindVerb: z.boolean().default(false),
  weight: z.number().int().min(1).max(100).default(1),
  /** The extender only wants node names, not whole Node objects. */
  nodeCacheCapable: z.boolean().default(false),
  /** Failures and timeouts of this extender are ignored rather than failing the pod. */
  ignorable: z.boolean().default(false),
  timeoutMs: z.number().int().positive().default(5000),
  /** Only pods requesting one of these (extended) resources go to this extender; empty = all. */
  managedResources: z.array(z.string()).default([]),
}).strict();
export type ExtenderConfig = z.infer<typeof extenderSchema>;

export const configSchema = z.object({
  apiVersion: z.string().optional(),
  kind: z.string().optional(),
  percentageOfNodesToScore: z.number().int().min(0).max(100).default(0),
  podInitialBackoffSeconds: z.number().positive().default(1),
  podMaxBackoffSeconds: z.number().positive().default(10),
  profiles: z.array(z.object({
    schedulerName: z.string().min(1).default(DEFAULT_SCHEDULER_NAME),
    percentageOfNodesToScore: z.number().int().min(0).max(100).optional(),
    plugins: pluginsSchema.default({}),
    pluginConfig: z.array(z.object({ name: z.string().min(1), args: z.unknown() }).strict()).default([]),
  }).strict()).default([{ schedulerName: DEFAULT_SCHEDULER_NAME, plugins: {}, pluginConfig: [] }]),
  extenders: z.array(extenderSchema).default([]),
}).strict();

export type SchedulerConfigInput = z.input<typeof configSchema>;

/** One profile after defaults, validated: plugin names per extension point, weights and parsed args. */
export interface ProfileConfig {
  schedulerName: string;
  percentageOfNodesToScore: number;
  points: Record<ExtensionPoint, PluginRef[]>;
  weights: Map<string, number>;
  args: Map<string, unknown>;
}

export interface SchedulerConfig {
  profiles: ProfileConfig[];
  extenders: ExtenderConfig[];
  podInitialBackoffMs: number;
  podMaxBackoffMs: number;
}

const fail = (field: string, msg: string): never => { throw new InvalidArgumentError(field, msg); };

/** Resolves and validates a configuration; throws InvalidArgumentError naming the field. */
export function resolveConfig(input: unknown, registry: Registry = inTreeRegistry()): SchedulerConfig {
  const parsed = configSchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail(issue.path.join('.') || 'config', issue.message);
  }
  const cfg = parsed.data!;
  if (cfg.podMaxBackoffSeconds < cfg.podInitialBackoffSeconds) fail('podMaxBackoffSeconds', 'must be at least podInitialBackoffSeconds');
  const names = new Set<string>();
  const profiles = cfg.profiles.map((p, pi): ProfileConfig => {
    const base = `profiles[${pi}]`;
    if (names.has(p.schedulerName)) fail(`${base}.schedulerName`, `duplicate profile "${p.schedulerName}"`);
    names.add(p.schedulerName);
    const known = [...registry.keys()].sort().join(', ');
    const check = (ref: { name: string; weight?: number }, field: string) => {
      if (ref.name !== '*' && !registry.has(ref.name)) fail(`${field}.name`, `unknown plugin "${ref.name}" (known: ${known})`);
    };
    const points = {} as Record<ExtensionPoint, PluginRef[]>;
    const weights = new Map<string, number>();
    for (const ref of DEFAULT_PLUGINS.score) weights.set(ref.name, ref.weight ?? 1);
    const multi = p.plugins.multiPoint;
    multi?.enabled.forEach((r, i) => check(r, `${base}.plugins.multiPoint.enabled[${i}]`));
    multi?.disabled.forEach((r, i) => check(r, `${base}.plugins.multiPoint.disabled[${i}]`));
    for (const point of EXTENSION_POINTS) {
      const set = p.plugins[point];
      const field = `${base}.plugins.${point}`;
      set?.enabled.forEach((r, i) => { check(r, `${field}.enabled[${i}]`); if (r.name === '*') fail(`${field}.enabled[${i}].name`, '"*" can only be disabled'); });
      set?.disabled.forEach((r, i) => check(r, `${field}.disabled[${i}]`));
      const disabled = new Set([...(set?.disabled ?? []), ...(multi?.disabled ?? [])].map((r) => r.name));
      let list = disabled.has('*') ? [] : DEFAULT_PLUGINS[point].filter((r) => !disabled.has(r.name));
      const enabled = [...(set?.enabled ?? [])];
      // multiPoint enables a plugin at every extension point it implements.
      for (const r of multi?.enabled ?? []) if (implementsPoint(registry, r.name, point)) enabled.push(r);
      for (const [i, r] of enabled.entries()) {
        if (!implementsPoint(registry, r.name, point)) fail(`${field}.enabled[${i}].name`, `plugin "${r.name}" does not implement the ${point} extension point`);
        if (r.weight !== undefined) {
          if (point !== 'score' && !multi?.enabled.includes(r)) fail(`${field}.enabled[${i}].weight`, 'weights apply only to score plugins');
          if (!Number.isInteger(r.weight) || r.weight < 0 || r.weight > 100) fail(`${field}.enabled[${i}].weight`, `must be an integer in the range 0-100, got ${r.weight}`);
          if (point === 'score') weights.set(r.name, r.weight === 0 ? 1 : r.weight);
        }
        list = list.filter((x) => x.name !== r.name);
        list.push({ name: r.name });
      }
      points[point] = list;
    }
    if (points.queueSort.length !== 1) fail(`${base}.plugins.queueSort`, `exactly one queueSort plugin must be enabled, got ${points.queueSort.length}`);
    if (!points.bind.length) fail(`${base}.plugins.bind`, 'at least one bind plugin must be enabled');
    const args = new Map<string, unknown>();
    const used = new Set(Object.values(points).flat().map((r) => r.name));
    p.pluginConfig.forEach((pc, i) => {
      const field = `${base}.pluginConfig[${i}]`;
      const reg = registry.get(pc.name);
      if (!reg) fail(`${field}.name`, `unknown plugin "${pc.name}" (known: ${known})`);
      if (args.has(pc.name)) fail(`${field}.name`, `duplicate pluginConfig for "${pc.name}"`);
      try {
        args.set(pc.name, reg!.parseArgs ? reg!.parseArgs(pc.args, `${field}.args`) : pc.args);
      } catch (err) {
        if (err instanceof InvalidArgumentError) throw err;
        throw new InvalidArgumentError(undefined, (err as Error).message);
      }
    });
    for (const name of used) if (!args.has(name)) args.set(name, registry.get(name)?.parseArgs?.(undefined, `${base}.pluginConfig[${name}].args`));
    return { schedulerName: p.schedulerName, percentageOfNodesToScore: p.percentageOfNodesToScore ?? cfg.percentageOfNodesToScore, points, weights, args };
  });
  return {
    profiles,
    extenders: cfg.extenders,
    podInitialBackoffMs: cfg.podInitialBackoffSeconds * 1000,
    podMaxBackoffMs: cfg.podMaxBackoffSeconds * 1000,
  };
}

/** Which extension points each in-tree plugin implements (static, so config can be checked without building plugins). */
export const PLUGIN_POINTS: Record<string, ExtensionPoint[]> = {
  PrioritySort: ['queueSort'],
  SchedulingGates: ['preEnqueue'],
  NodeUnschedulable: ['filter'],
  NodeName: ['filter'],
  TaintToleration: ['filter', 'preScore', 'score'],
  NodeAffinity: ['preFilter', 'filter', 'preScore', 'score'],
  NodePorts: ['preFilter', 'filter'],
  NodeResourcesFit: ['preFilter', 'filter', 'score'],
  NodeResourcesBalancedAllocation: ['preScore', 'score'],
  ImageLocality: ['preScore', 'score'],
  PodTopologySpread: ['preFilter', 'filter', 'preScore', 'score'],
  InterPodAffinity: ['preFilter', 'filter', 'preScore', 'score'],
  DefaultBinder: ['bind'],
  DefaultPreemption: ['postFilter'],
};

function implementsPoint(registry: Registry, name: string, point: ExtensionPoint): boolean {
  const points = PLUGIN_POINTS[name] ?? registry.get(name)?.points;
  return points ? points.includes(point) : true;
}

/** Reads a YAML or JSON configuration file. */
export function loadConfigFile(file: string, registry?: Registry): SchedulerConfig {
  let doc: unknown;
  try {
    doc = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new InvalidArgumentError(undefined, `scheduler config ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  try {
    return resolveConfig(doc, registry);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new InvalidArgumentError(undefined, `scheduler config ${file}: ${err.message}`);
    throw err;
  }
}
