// The `berth` command dispatcher. Each command lives in its own module.
import { up, status } from './up';
import { KUBECTL_COMMANDS, defaultIo, runKubectl } from './kubectl';
import { runRuntime } from './runtime';
import { runExplain } from './explain';

const HELP = `berth — run and use a Berth cluster

Usage:
  berth up        bring up a local cluster (etcd + the five services) in the foreground
  berth status    show the health of the local services
  berth help      this text

Cluster objects (like kubectl):
  berth get TYPE [NAME] [-o wide|yaml|json|name] [-l SEL] [--field-selector SEL] [-n NS|-A] [-w]
  berth describe TYPE [NAME]      details of objects, with their events
  berth apply -f FILE|DIR|-       create or update from YAML/JSON manifests
  berth create -f FILE|DIR|-      create from manifests
  berth delete TYPE NAME|-l SEL|-f FILE [--grace-period N] [--force]
  berth auth can-i VERB TYPE[/NAME]    check an action; berth auth whoami
  berth config view|get-contexts|use-context|set-context|set-cluster|set-credentials
  berth certs [--dir DIR] [--node NAME]   create the cluster CA and component certificates
  berth api-resources             the kinds the cluster stores
  berth explain pod NAME | -f SNAPSHOT.yaml   why a pod fits (or not) each node, with scores

Config: --kubeconfig, $BERTH_KUBECONFIG, the local cluster's $BERTH_STATE_DIR/admin.conf, ~/.berth/config

Environment: BERTH_RUN_DIR (sockets, default /run/berth), BERTH_STATE_DIR (state, default /var/lib/berth)
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'up':
      if (rest.length) { process.stderr.write(`error: berth up takes no arguments yet, got "${rest[0]}"\n`); return 2; }
      return up();
    case 'status': {
      const st = await status();
      for (const [k, v] of Object.entries(st)) process.stdout.write(`${k.padEnd(15)} ${v}\n`);
      return Object.values(st).every((v) => v === 'SERVING') ? 0 : 1;
    }
    case 'runtime': return runRuntime(rest); // berth runtime images|pull|import|rmi (crictl-like)
    case 'explain': return runExplain({ stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s), env: process.env }, rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return 0;
    default:
      if (Object.prototype.hasOwnProperty.call(KUBECTL_COMMANDS, cmd)) return runKubectl(defaultIo(), cmd, rest);
      process.stderr.write(`error: unknown command "${cmd}" for "berth"\nRun 'berth help' for usage.\n`);
      return 1;
  }
}
