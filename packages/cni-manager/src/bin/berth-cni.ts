#!/usr/bin/env node
// berth-cni: Berth's bridge and routed modes as a CNI plugin (spec 1.0/1.1), so any CNI runtime
// can use them. It asks the running cni-manager over its unix socket; when none answers, it
// does the work itself (standalone) with the same code and a state dir of its own.
//
// Network config: { cniVersion, name, type: "berth-cni", socket?, mode?, podCidr?, stateDir?,
// bridgeName?, mtu? }.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { cni } from '@berth/api';
import { createClient, defaultSocket, stateRoot } from '@berth/common';
import { PodNetwork, type SetUpResult } from '../network';

const SUPPORTED = ['0.3.1', '0.4.0', '1.0.0', '1.1.0'];

interface Conf {
  cniVersion: string;
  name: string;
  socket?: string;
  mode?: 'bridge' | 'routed';
  podCidr?: string;
  stateDir?: string;
  bridgeName?: string;
  mtu?: number;
  'cni.dev/valid-attachments'?: Array<{ containerID: string; ifname: string }>;
}

class PluginError extends Error {
  constructor(readonly code: number, msg: string, readonly details = '') { super(msg); }
}

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new PluginError(4, `${name} is not set`);
  return v;
}

function toCniResult(version: string, r: SetUpResult, netns: string): Record<string, unknown> {
  const podIf = r.interfaces.findIndex((i) => i.sandbox !== '');
  return {
    cniVersion: version,
    interfaces: r.interfaces.map((i) => ({ name: i.name, ...(i.mac ? { mac: i.mac } : {}), ...(i.sandbox ? { sandbox: netns } : {}) })),
    ips: r.ips.map((address) => ({ address, gateway: r.gateway, interface: podIf })),
    routes: r.routes.map((x) => ({ dst: x.dst, ...(x.gw ? { gw: x.gw } : {}) })),
    dns: { nameservers: r.dns.nameservers, domain: r.dns.domain || undefined, search: r.dns.search, options: r.dns.options },
  };
}

type Client = InstanceType<typeof cni.NetworkServiceClient>;
function rpc<T>(client: Client, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => (client as unknown as Record<string, Function>)[method]!(req, (e: ServiceError | null, r: T) => (e ? reject(e) : resolve(r))));
}

async function viaDaemon(conf: Conf, command: string): Promise<Record<string, unknown> | null | undefined> {
  const target = conf.socket ? `unix://${conf.socket}` : defaultSocket('cni-manager');
  if (!fs.existsSync(target.slice('unix://'.length))) return undefined;
  const client = createClient(cni.NetworkServiceClient, { target });
  try {
    const id = command === 'GC' || command === 'STATUS' ? '' : env('CNI_CONTAINERID');
    const netns = process.env['CNI_NETNS'] ?? '';
    switch (command) {
      case 'ADD': {
        const r = await rpc<cni.SetUpPodResponse>(client, 'setUpPod', cni.SetUpPodRequest.fromPartial({ sandboxId: id, netnsPath: env('CNI_NETNS'), interfaceName: process.env['CNI_IFNAME'] || 'eth0' }));
        return toCniResult(conf.cniVersion, { ...r, dns: { nameservers: r.dns?.nameservers ?? [], domain: r.dns?.domain ?? '', search: r.dns?.search ?? [], options: r.dns?.options ?? [] } } as SetUpResult, netns);
      }
      case 'DEL':
        await rpc(client, 'tearDownPod', cni.TearDownPodRequest.fromPartial({ sandboxId: id, netnsPath: netns }));
        return null;
      case 'CHECK': {
        const r = await rpc<cni.CheckPodResponse>(client, 'checkPod', cni.CheckPodRequest.fromPartial({ sandboxId: id, netnsPath: netns }));
        if (!r.ok) throw new PluginError(100, `attachment differs: ${r.problems.join('; ')}`);
        return null;
      }
      case 'GC':
        await rpc(client, 'garbageCollect', cni.GarbageCollectRequest.fromPartial({ validSandboxIds: (conf['cni.dev/valid-attachments'] ?? []).map((a) => a.containerID) }));
        return null;
      case 'STATUS': {
        const r = await rpc<cni.StatusResponse>(client, 'status', {});
        if (!r.ready) throw new PluginError(50, 'cni-manager is not ready');
        return null;
      }
    }
    throw new PluginError(4, `unknown CNI_COMMAND ${command}`);
  } catch (err) {
    if (err instanceof PluginError) throw err;
    const e = err as ServiceError;
    if (e.code === 14 /* UNAVAILABLE */ && /connect/i.test(e.details ?? '')) return undefined; // stale socket: go standalone
    throw new PluginError(e.code === 3 ? 7 : 11, e.details || e.message);
  } finally {
    client.close();
  }
}

async function standalone(conf: Conf, command: string): Promise<Record<string, unknown> | null> {
  // Nothing to ask and nothing to make: STATUS of a standalone plugin is "ready".
  if (command === 'STATUS') return null;
  const net = new PodNetwork({
    mode: conf.mode ?? 'bridge', podCidr: conf.podCidr ?? '10.244.0.0/24', bridgeName: conf.bridgeName ?? 'berth0', mtu: conf.mtu ?? 1500,
    stateDir: conf.stateDir ?? path.join(stateRoot(), 'cni', conf.name), probeCapabilities: false,
    // Runtimes call plugins for several pods at once: they take turns on the state dir, as
    // host-local does on its lock.
    stateLockWaitMs: 30_000,
  });
  await net.start();
  try {
    switch (command) {
      case 'ADD': {
        const r = await net.setUp({ podUid: '', podNamespace: '', podName: '', sandboxId: env('CNI_CONTAINERID'), netnsPath: env('CNI_NETNS'), interfaceName: process.env['CNI_IFNAME'] || 'eth0', annotations: {} });
        return toCniResult(conf.cniVersion, r, env('CNI_NETNS'));
      }
      case 'DEL':
        await net.tearDown({ sandboxId: env('CNI_CONTAINERID') });
        return null;
      case 'CHECK': {
        const problems = await net.check(env('CNI_CONTAINERID'));
        if (problems.length) throw new PluginError(100, `attachment differs: ${problems.join('; ')}`);
        return null;
      }
      case 'GC':
        await net.gc((conf['cni.dev/valid-attachments'] ?? []).map((a) => a.containerID));
        return null;
      case 'STATUS':
        return null;
    }
    throw new PluginError(4, `unknown CNI_COMMAND ${command}`);
  } finally {
    await net.close();
  }
}

async function main(): Promise<void> {
  const command = process.env['CNI_COMMAND'] ?? '';
  const input = fs.readFileSync(0, 'utf8');
  let conf: Conf;
  try {
    conf = JSON.parse(input || '{}') as Conf;
  } catch (err) {
    throw new PluginError(6, `network configuration is not valid JSON: ${(err as Error).message}`);
  }
  if (command === 'VERSION') {
    process.stdout.write(JSON.stringify({ cniVersion: conf.cniVersion ?? '1.1.0', supportedVersions: SUPPORTED }));
    return;
  }
  if (!conf.cniVersion || !SUPPORTED.includes(conf.cniVersion)) throw new PluginError(1, `cniVersion "${conf.cniVersion}" is not supported (supported: ${SUPPORTED.join(', ')})`);
  if (!conf.name) throw new PluginError(7, 'missing network name');
  if (!['ADD', 'DEL', 'CHECK', 'GC', 'STATUS'].includes(command)) throw new PluginError(4, `unknown CNI_COMMAND "${command}"`);
  const viaSocket = await viaDaemon(conf, command);
  const out = viaSocket === undefined ? await standalone(conf, command) : viaSocket;
  if (out) process.stdout.write(JSON.stringify(out));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    const e = err instanceof PluginError ? err : new PluginError(999, err instanceof Error ? err.message : String(err));
    process.stdout.write(JSON.stringify({ cniVersion: '1.1.0', code: e.code, msg: e.message, ...(e.details ? { details: e.details } : {}) }));
    process.exit(1);
  },
);
