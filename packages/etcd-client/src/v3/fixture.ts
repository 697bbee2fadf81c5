// Test support shared by the v2, v3 and recipe tests: a real etcd (EtcdCluster from
// @berth/common) in a unique temporary directory, always torn down, and unique key prefixes so
// tests sharing one etcd never see each other's keys.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EtcdCluster, type EtcdClusterOptions } from '@berth/common';

export async function startEtcd(opts: Partial<EtcdClusterOptions> = {}): Promise<EtcdCluster> {
  const dataRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-etcd-test-'));
  return EtcdCluster.start({ dataRoot, removeDataOnDestroy: true, enableV2: true, ...opts });
}

let counter = 0;
/** A key prefix no other test (or earlier run) uses. */
export function uniquePrefix(name: string): string {
  return `/t-${process.pid.toString(36)}-${Date.now().toString(36)}-${(counter++).toString(36)}-${name}`;
}

export async function waitUntil(fn: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
