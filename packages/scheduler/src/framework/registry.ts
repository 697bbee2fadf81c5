// The in-tree plugin registry (name -> factory and args schema) and the default profile:
// which plugins run at which extension point, and the default score weights of Kubernetes.
import { z } from '@berth/common';
import type { Handle, Plugin, PluginRegistration } from './interfaces';
import { PrioritySort } from '../plugins/priority-sort/priority-sort';
import { SchedulingGates } from '../plugins/scheduling-gates/scheduling-gates';
import { NodeUnschedulable } from '../plugins/node-unschedulable/node-unschedulable';
import { NodeName } from '../plugins/node-name/node-name';
import { TaintToleration } from '../plugins/taint-toleration/taint-toleration';
import * as nodeAffinity from '../plugins/node-affinity/node-affinity';
import { NodePorts } from '../plugins/node-ports/node-ports';
import * as fit from '../plugins/node-resources-fit/node-resources-fit';
import * as balanced from '../plugins/node-resources-balanced-allocation/node-resources-balanced-allocation';
import { ImageLocality } from '../plugins/image-locality/image-locality';
import * as spread from '../plugins/pod-topology-spread/pod-topology-spread';
import * as ipa from '../plugins/inter-pod-affinity/inter-pod-affinity';
import { DefaultBinder } from '../plugins/default-binder/default-binder';
import * as preemption from '../plugins/default-preemption/default-preemption';

const noArgs = (name: string) => (args: unknown, field: string) => {
  if (args !== undefined && args !== null && !(typeof args === 'object' && !Object.keys(args as object).length)) {
    throw new Error(`${field}: plugin ${name} takes no args`);
  }
  return undefined;
};

function schemaArgs(schema: z.ZodType) {
  return (args: unknown, field: string) => {
    const r = schema.safeParse(args ?? {});
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new Error(`${field}${issue.path.length ? `.${issue.path.join('.')}` : ''}: ${issue.message}`);
    }
    return r.data;
  };
}

export type Registry = Map<string, PluginRegistration>;

export function inTreeRegistry(): Registry {
  const r: Registry = new Map();
  const simple = (name: string, make: (h: Handle) => Plugin) => r.set(name, { factory: (_a, h) => make(h), parseArgs: noArgs(name) });
  simple('PrioritySort', () => new PrioritySort());
  simple('SchedulingGates', () => new SchedulingGates());
  simple('NodeUnschedulable', () => new NodeUnschedulable());
  simple('NodeName', () => new NodeName());
  simple('TaintToleration', () => new TaintToleration());
  simple('NodePorts', () => new NodePorts());
  simple('ImageLocality', (h) => new ImageLocality(h.snapshot));
  simple('DefaultBinder', (h) => new DefaultBinder(h));
  r.set('NodeAffinity', { factory: (a) => new nodeAffinity.NodeAffinity(a as nodeAffinity.NodeAffinityArgs), parseArgs: schemaArgs(nodeAffinity.argsSchema) });
  r.set('NodeResourcesFit', { factory: (a) => new fit.NodeResourcesFit(a as fit.NodeResourcesFitArgs), parseArgs: schemaArgs(fit.argsSchema) });
  r.set('NodeResourcesBalancedAllocation', { factory: (a) => new balanced.NodeResourcesBalancedAllocation(a as object), parseArgs: schemaArgs(balanced.argsSchema) });
  r.set('PodTopologySpread', { factory: (a, h) => new spread.PodTopologySpread(h.snapshot, a as object), parseArgs: schemaArgs(spread.argsSchema) });
  r.set('InterPodAffinity', { factory: (a, h) => new ipa.InterPodAffinity(h.snapshot, a as object), parseArgs: schemaArgs(ipa.argsSchema) });
  r.set('DefaultPreemption', { factory: (a, h) => new preemption.DefaultPreemption(h, a as object), parseArgs: schemaArgs(preemption.argsSchema) });
  return r;
}

export interface PluginRef { name: string; weight?: number }

/** Kubernetes' default plugin set (v1 KubeSchedulerConfiguration), with default score weights. */
export const DEFAULT_PLUGINS: Record<string, PluginRef[]> = {
  preEnqueue: [{ name: 'SchedulingGates' }],
  queueSort: [{ name: 'PrioritySort' }],
  preFilter: ['NodeAffinity', 'NodePorts', 'NodeResourcesFit', 'PodTopologySpread', 'InterPodAffinity'].map((name) => ({ name })),
  filter: ['NodeUnschedulable', 'NodeName', 'TaintToleration', 'NodeAffinity', 'NodePorts', 'NodeResourcesFit', 'PodTopologySpread', 'InterPodAffinity'].map((name) => ({ name })),
  postFilter: [{ name: 'DefaultPreemption' }],
  preScore: ['TaintToleration', 'NodeAffinity', 'PodTopologySpread', 'InterPodAffinity', 'NodeResourcesBalancedAllocation', 'ImageLocality'].map((name) => ({ name })),
  score: [
    { name: 'TaintToleration', weight: 3 },
    { name: 'NodeAffinity', weight: 2 },
    { name: 'NodeResourcesFit', weight: 1 },
    { name: 'PodTopologySpread', weight: 2 },
    { name: 'InterPodAffinity', weight: 2 },
    { name: 'NodeResourcesBalancedAllocation', weight: 1 },
    { name: 'ImageLocality', weight: 1 },
  ],
  reserve: [],
  permit: [],
  preBind: [],
  bind: [{ name: 'DefaultBinder' }],
  postBind: [],
};
