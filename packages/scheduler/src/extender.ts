// Client of an out-of-process scheduler extender (berth.scheduler.v1.Extender, modelled on
// kube-scheduler's HTTP extender): Filter, Prioritize and Bind with a per-call timeout. An
// ignorable extender that fails or times out is skipped; any other failure fails the cycle.
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { scheduler } from '@berth/api';
import { createClient, UnavailableError } from '@berth/common';
import type { ExtenderConfig } from './config';
import type { NodeInfo, PodInfo } from './framework/types';

export class ExtenderError extends UnavailableError {}

export class Extender {
  readonly name: string;
  private readonly client: scheduler.ExtenderClient;

  constructor(readonly config: ExtenderConfig, tls?: { caFile: string; certFile?: string; keyFile?: string }) {
    this.name = `extender(${config.address})`;
    this.client = createClient(scheduler.ExtenderClient, { target: config.address, tls, defaultDeadlineMs: config.timeoutMs });
  }

  close(): void { this.client.close(); }

  /** An extender with managedResources sees only pods that request (or limit) one of them. */
  isInterested(pod: PodInfo): boolean {
    const managed = this.config.managedResources;
    if (!managed.length) return true;
    const spec = pod.pod.spec;
    for (const c of [...(spec?.containers ?? []), ...(spec?.initContainers ?? [])]) {
      for (const r of managed) if (c.resources?.requests?.[r] !== undefined || c.resources?.limits?.[r] !== undefined) return true;
    }
    return false;
  }

  private call<Req, Res>(method: 'filter' | 'prioritize' | 'bind', req: Req): Promise<Res> {
    const deadline = Date.now() + this.config.timeoutMs;
    return new Promise((resolve, reject) => {
      (this.client[method] as unknown as (r: Req, md: unknown, o: unknown, cb: (e: ServiceError | null, r: Res) => void) => void)
        .call(this.client, req, new Metadata(), { deadline }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  private args(pod: PodInfo, nodes: readonly NodeInfo[]): scheduler.ExtenderArgs {
    return scheduler.ExtenderArgs.fromPartial({
      pod: pod.pod,
      nodes: this.config.nodeCacheCapable ? [] : nodes.map((n) => n.node!),
      nodeNames: this.config.nodeCacheCapable ? nodes.map((n) => n.name) : [],
    });
  }

  private failure(verb: string, err: unknown): ExtenderError {
    const e = err as ServiceError;
    return new ExtenderError(`${this.name} ${verb}: ${e.details ?? e.message ?? String(err)}`);
  }

  async filter(pod: PodInfo, nodes: NodeInfo[]): Promise<{ nodes: NodeInfo[]; failed: Map<string, string>; failedAndUnresolvable: Map<string, string>; ignored: boolean }> {
    let res: scheduler.ExtenderFilterResult;
    try {
      res = await this.call('filter', this.args(pod, nodes));
      if (res.error) throw new Error(res.error);
    } catch (err) {
      if (this.config.ignorable) return { nodes, failed: new Map(), failedAndUnresolvable: new Map(), ignored: true };
      throw this.failure('filter', err);
    }
    const keep = new Set(this.config.nodeCacheCapable ? res.nodeNames : res.nodes.map((n) => n.metadata?.name ?? ''));
    return {
      nodes: nodes.filter((n) => keep.has(n.name)),
      failed: new Map(Object.entries(res.failedNodes ?? {})),
      failedAndUnresolvable: new Map(Object.entries(res.failedAndUnresolvableNodes ?? {})),
      ignored: false,
    };
  }

  /** Node name -> 0..10, or null when an ignorable extender failed. */
  async prioritize(pod: PodInfo, nodes: NodeInfo[]): Promise<Map<string, number> | null> {
    try {
      const res: scheduler.HostPriorityList = await this.call('prioritize', this.args(pod, nodes));
      return new Map(res.items.map((h) => [h.host, Math.max(0, Math.min(10, Number(h.score)))]));
    } catch (err) {
      if (this.config.ignorable) return null;
      throw this.failure('prioritize', err);
    }
  }

  async bind(pod: PodInfo, node: string): Promise<void> {
    let res: scheduler.ExtenderBindingResult;
    try {
      res = await this.call('bind', scheduler.ExtenderBindingArgs.fromPartial({ podName: pod.name, podNamespace: pod.namespace, podUid: pod.uid, node }));
    } catch (err) {
      throw this.failure('bind', err);
    }
    if (res.error) throw new ExtenderError(`${this.name} bind: ${res.error}`);
  }
}
