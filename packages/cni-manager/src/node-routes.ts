// NodeRouteWatcher: programs routes to the other nodes' pod CIDRs from the Node objects in the
// cluster state, through the Store API's Watch (never by reaching into another service).
// A node contributes spec.podCIDR via its InternalIP address; nodes without both are skipped.
// After a disconnect it resumes from the last resourceVersion; when that is too old (ERROR
// 410) it lists again and applies the new state only once the initial events have ended, so
// routes do not flap while it catches up.
import { setTimeout as sleep } from 'node:timers/promises';
import type { core, store } from '@berth/api';
import type { StoreClient } from '@berth/apimachinery';
import { BerthError, type Logger } from '@berth/common';
import type { NodeRoute } from './network';

export interface NodeRouteTarget {
  setNodeRoutes(routes: NodeRoute[]): Promise<void>;
}

const INITIAL_EVENTS_END = 'k8s.io/initial-events-end';

export class NodeRouteWatcher {
  private readonly stop$ = new AbortController();
  private readonly nodes = new Map<string, NodeRoute[]>();
  /** Whether the routes follow the Node objects now, and if not why (for Status). */
  health: { synced: boolean; reason: string; message: string } = { synced: false, reason: 'Starting', message: 'watching Node objects' };

  /** `client` stays the caller's to close. */
  constructor(private readonly opts: { client: StoreClient; nodeName: string; net: NodeRouteTarget; logger?: Logger; retryMs?: number }) {}

  private get stopped(): boolean { return this.stop$.signal.aborted; }

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stop$.abort();
  }

  /** One route per pod CIDR of the node (IPv4 and IPv6), via its InternalIP of the same family. */
  private routesOf(node: core.Node): NodeRoute[] {
    const cidrs = [...new Set([node.spec?.podCIDR, ...(node.spec?.podCIDRs ?? [])].filter((c): c is string => !!c))];
    const ips = (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address);
    const out: NodeRoute[] = [];
    for (const podCidr of cidrs) {
      const v6 = podCidr.includes(':');
      const via = ips.find((ip) => ip.includes(':') === v6);
      if (via) out.push({ podCidr, via });
    }
    return out;
  }

  private async loop(): Promise<void> {
    let rv = '';
    let refused = 0;
    while (!this.stopped) {
      const listing = rv === '';
      const fresh = new Map<string, NodeRoute[]>();
      try {
        const events = this.opts.client.watch({ resource: 'nodes', resourceVersion: rv, allowWatchBookmarks: true, ...(listing ? { sendInitialEvents: true } : {}) }, this.stop$.signal);
        let catchingUp = listing;
        for await (const ev of events as AsyncIterable<store.WatchEvent>) {
          if (ev.type === 'ERROR') {
            this.opts.logger?.warn({ error: ev.error }, 'node watch: resourceVersion too old, listing again');
            rv = '';
            break;
          }
          const node = ev.object?.node;
          rv = node?.metadata?.resourceVersion || rv;
          if (ev.type === 'BOOKMARK') {
            if (catchingUp && node?.metadata?.annotations?.[INITIAL_EVENTS_END] === 'true') {
              catchingUp = false;
              this.nodes.clear();
              for (const [k, v] of fresh) this.nodes.set(k, v);
              await this.apply();
              this.health = { synced: true, reason: 'Watching', message: `routes to ${this.nodes.size} other nodes` };
              refused = 0;
            }
            continue;
          }
          const name = node?.metadata?.name;
          if (!node || !name || name === this.opts.nodeName) continue;
          const target = catchingUp ? fresh : this.nodes;
          const routes = ev.type === 'DELETED' ? [] : this.routesOf(node);
          if (routes.length) target.set(name, routes);
          else target.delete(name);
          if (!catchingUp) await this.apply();
        }
      } catch (err) {
        if (this.stopped) return;
        const kind = err instanceof BerthError ? err.kind : '';
        if (kind === 'PermissionDenied' || kind === 'Unauthenticated') {
          // Retrying will not help until someone grants the rights: say so once, clearly, and
          // back off (still retrying, so a new binding takes effect without a restart).
          const message = `the Store refuses to let this identity watch Node objects (${(err as Error).message}); it needs get/list/watch on nodes (a ClusterRole bound to it), so routes to other nodes are not being programmed`;
          if (refused++ === 0) this.opts.logger?.error({ err }, message);
          this.health = { synced: false, reason: kind, message };
        } else {
          this.opts.logger?.warn({ err }, 'node watch failed; retrying');
          this.health = { synced: false, reason: 'WatchFailed', message: (err as Error).message };
        }
      }
      const backoff = refused ? Math.min(30_000, (this.opts.retryMs ?? 1000) * 2 ** Math.min(refused, 5)) : this.opts.retryMs ?? 1000;
      if (!this.stopped) await sleep(backoff, undefined, { signal: this.stop$.signal }).catch(() => undefined);
    }
  }

  private async apply(): Promise<void> {
    try {
      await this.opts.net.setNodeRoutes([...this.nodes.values()].flat());
    } catch (err) {
      this.opts.logger?.error({ err }, 'programming node routes failed');
    }
  }
}
