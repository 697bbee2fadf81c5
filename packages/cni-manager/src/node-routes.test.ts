// NodeRouteWatcher against a Store endpoint that speaks the Store contract's Watch (served here
// by the test: cni-manager may not depend on the etcd-client service), programming real routes
// in a node namespace of the test's own.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { core, store } from '@berth/api';
import { StoreClient } from '@berth/apimachinery';
import { serve, withUnimplemented, type RunningServer } from '@berth/common';
import type { ServerWritableStream } from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PodNetwork } from './network';
import { NodeRouteWatcher } from './node-routes';
import { podCidrsOfNode } from './service';
import { sh, Topology } from './testing/topology';

let topo: Topology;
let dir: string;
let server: RunningServer | undefined;
let watcher: NodeRouteWatcher | undefined;
let net: PodNetwork | undefined;
let client: StoreClient | undefined;

beforeEach(() => {
  topo = new Topology();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-nodes-'));
});
afterEach(async () => {
  watcher?.stop();
  client?.close();
  await net?.close();
  await server?.shutdown(0);
  topo.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});

const nodeObj = (name: string, rv: number, podCIDR: string, ip: string): core.Object => core.Object.fromPartial({
  node: { metadata: { name, resourceVersion: String(rv) }, spec: { podCIDR }, status: { addresses: [{ type: 'InternalIP', address: ip }, { type: 'Hostname', address: name }] } },
});

async function waitFor(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('NodeRouteWatcher', () => {
  it('routes to the pod CIDRs of the other nodes as Node objects come, change and go, and resumes after a disconnect', async () => {
    const me = topo.node(1, '10.75.1.0/24');
    net = new PodNetwork({ mode: 'routed', podCidr: me.podCidr, stateDir: path.join(dir, 'state'), hostNetns: me.netns });
    await net.start();
    const streams: Array<ServerWritableStream<store.WatchRequest, store.WatchEvent>> = [];
    const requests: store.WatchRequest[] = [];
    const sock = path.join(dir, 'store.sock');
    server = await serve({
      listen: `unix://${sock}`,
      services: [{ definition: store.StoreService, implementation: withUnimplemented(store.StoreService, 'test', {
        watch: (call: ServerWritableStream<store.WatchRequest, store.WatchEvent>) => { requests.push(call.request); streams.push(call); },
      }) }],
    });
    client = new StoreClient({ target: `unix://${sock}` });
    watcher = new NodeRouteWatcher({ client, nodeName: 'node-1', net, retryMs: 50 });
    watcher.start();
    await waitFor(() => streams.length === 1, 'the watch');
    expect(requests[0]).toMatchObject({ resource: 'nodes', resourceVersion: '', sendInitialEvents: true });
    const s = streams[0]!;
    const routes = (): string => sh('ip', ['-n', me.name, 'route', 'show']);
    const u = `192.168.${topo.subnet}`; // the node's underlay: gateways must be on-link
    s.write(store.WatchEvent.fromPartial({ type: 'ADDED', object: nodeObj('node-1', 1, '10.75.1.0/24', `${u}.1`) }));
    s.write(store.WatchEvent.fromPartial({ type: 'ADDED', object: nodeObj('node-2', 2, '10.75.2.0/24', `${u}.2`) }));
    // Nothing is applied until the initial listing has ended.
    await new Promise((r) => setTimeout(r, 200));
    expect(routes()).not.toMatch(/10\.75\.2\.0/);
    s.write(store.WatchEvent.fromPartial({ type: 'BOOKMARK', object: core.Object.fromPartial({ node: { metadata: { resourceVersion: '2', annotations: { 'k8s.io/initial-events-end': 'true' } } } }) }));
    await waitFor(() => routes().includes(`10.75.2.0/24 via ${u}.2 `), 'the route to node-2');
    expect(routes()).not.toMatch(/10\.75\.1\.0\/24 via/); // not to itself
    s.write(store.WatchEvent.fromPartial({ type: 'MODIFIED', object: nodeObj('node-2', 3, '10.75.2.0/24', `${u}.22`) }));
    await waitFor(() => routes().includes(`10.75.2.0/24 via ${u}.22 `), 'the changed route');
    s.write(store.WatchEvent.fromPartial({ type: 'ADDED', object: nodeObj('node-3', 4, '10.75.3.0/24', `${u}.3`) }));
    await waitFor(() => routes().includes(`10.75.3.0/24 via ${u}.3 `), 'the route to node-3');
    // A dual-stack node: its IPv6 pod CIDR is routed via its IPv6 InternalIP.
    sh('ip', ['-n', me.name, 'addr', 'add', 'fd00:75::1/64', 'dev', 'ul', 'nodad']);
    s.write(store.WatchEvent.fromPartial({ type: 'ADDED', object: core.Object.fromPartial({ node: {
      metadata: { name: 'node-4', resourceVersion: '4' }, spec: { podCIDR: '10.75.4.0/24', podCIDRs: ['10.75.4.0/24', 'fd00:75:4::/64'] },
      status: { addresses: [{ type: 'InternalIP', address: `${u}.4` }, { type: 'InternalIP', address: 'fd00:75::4' }] } } }) }));
    await waitFor(() => sh('ip', ['-n', me.name, '-6', 'route', 'show']).includes('fd00:75:4::/64 via fd00:75::4 '), 'the IPv6 route to node-4');
    expect(routes()).toContain(`10.75.4.0/24 via ${u}.4 `);
    // The stream ends: the watcher resumes from the last resourceVersion it saw.
    s.end();
    await waitFor(() => streams.length === 2, 'the resumed watch');
    expect(requests[1]).toMatchObject({ resourceVersion: '4' });
    streams[1]!.write(store.WatchEvent.fromPartial({ type: 'DELETED', object: nodeObj('node-2', 5, '10.75.2.0/24', `${u}.22`) }));
    await waitFor(() => !/10\.75\.2\.0/.test(routes()), 'the removal of node-2');
    expect(routes()).toContain(`10.75.3.0/24 via ${u}.3 `);
    expect(net.nodeRoutes()).toEqual([{ podCidr: '10.75.3.0/24', via: `${u}.3` }, { podCidr: '10.75.4.0/24', via: `${u}.4` }, { podCidr: 'fd00:75:4::/64', via: 'fd00:75::4' }]);
    streams[1]!.end();
  });
});

describe('podCidrsOfNode', () => {
  it('takes this node\'s pod CIDRs from its Node object, waiting until it has one', async () => {
    const sock = path.join(dir, 'store.sock');
    let calls = 0;
    server = await serve({
      listen: `unix://${sock}`,
      services: [{ definition: store.StoreService, implementation: withUnimplemented(store.StoreService, 'test', {
        get: (call: { request: store.GetRequest }, cb: (e: Error | null, r?: core.Object) => void) => {
          if (call.request.name === 'node-8') return cb(null, core.Object.fromPartial({ node: { metadata: { name: 'node-8' }, spec: {} } }));
          if (call.request.name === 'node-9') return cb(null, core.Object.fromPartial({ node: { metadata: { name: 'node-9' }, spec: { podCIDR: '10.76.9.0/24', podCIDRs: ['fd00:76:9::/64', '10.76.9.0/24'] } } }));
          calls++;
          expect(call.request).toMatchObject({ resource: 'nodes', name: 'node-7' });
          // First not registered, then registered without a CIDR, then with one.
          if (calls === 1) cb(Object.assign(new Error('not found'), { code: 5 }));
          else cb(null, core.Object.fromPartial({ node: { metadata: { name: 'node-7' }, spec: calls === 2 ? {} : { podCIDR: '10.76.7.0/24' } } }));
        },
      }) }],
    });
    client = new StoreClient({ target: `unix://${sock}` });
    expect(await podCidrsOfNode(client, 'node-7')).toEqual({ v4: '10.76.7.0/24' });
    expect(calls).toBe(3);
    // Dual-stack: one range of each family, whatever the order.
    expect(await podCidrsOfNode(client, 'node-9')).toEqual({ v4: '10.76.9.0/24', v6: 'fd00:76:9::/64' });
    await expect(podCidrsOfNode(client, 'node-8', undefined, 0)).rejects.toThrow(/node node-8 has no spec.podCIDR in the Store; give --pod-cidr/);
  });
});
