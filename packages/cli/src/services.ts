// Where the service binaries are: the `bin` entry of each service package, resolved through
// node's module resolution (the packages are the CLI's dependencies). The CLI starts them as
// processes and talks to them only over gRPC.
import * as path from 'node:path';
import * as fs from 'node:fs';

export const SERVICES = ['etcd-client', 'scheduler', 'kubelet-agent', 'runtime-shim', 'cni-manager'] as const;
export type ServiceName = (typeof SERVICES)[number];

export function serviceBin(name: ServiceName): string {
  const pkgJson = require.resolve(`@berth/${name}/package.json`);
  const pkg = JSON.parse(fs.readFileSync(pkgJson, 'utf8')) as { bin: Record<string, string> };
  const bin = path.resolve(path.dirname(pkgJson), pkg.bin[`berth-${name}`]);
  if (!fs.existsSync(bin)) throw new Error(`${bin} does not exist: build the project first (npm start runs tools/bootstrap)`);
  return bin;
}
