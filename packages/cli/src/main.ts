// The `berth` command dispatcher. Each command lives in its own module.
import { UP_HELP, parseUpArgs, up, status } from './up';
import { CommandUsageError } from './cluster-flags';
import { down } from './down';
import { INIT_HELP, init, parseInitArgs } from './init';
import { JOIN_HELP, join, parseJoinArgs } from './join';
import { KUBECTL_COMMANDS, defaultIo, runKubectl } from './kubectl';
import { runRuntime } from './runtime';
import { runExplain } from './explain';

const HELP = `berth — run and use a Berth cluster

Usage:
  berth up        bring up a local cluster (etcd, control plane, N nodes) in the foreground;
                  [--nodes N] [--network bridge|routed] [--etcd-members N | --etcd-endpoints URLS]
  berth down      stop it (or clean up after a crashed berth up)
  berth init      set up a control plane for nodes on other machines; prints the join command
  berth join --token T --server https://H:P --ca-cert-hash sha256:X --pod-cidr CIDR
                  join this machine as a node (berth join --help)
  berth status    show the health of the local services
  berth runtime images|pull|import|rmi|pods|ps|inspect|inspectp|exec|logs|stats
                  crictl-like commands against one node's runtime-shim (--runtime-endpoint)
  berth help      this text

Cluster objects (like kubectl):
  berth get TYPE [NAME] [-o wide|yaml|json|name] [-l SEL] [--field-selector SEL] [-n NS|-A] [-w]
  berth describe TYPE [NAME]      details of objects, with their events
  berth apply -f FILE|DIR|-       create or update from YAML/JSON manifests
  berth create -f FILE|DIR|-      create from manifests
  berth delete TYPE NAME|-l SEL|-f FILE [--grace-period N] [--force] [--cascade=MODE]
  berth logs POD [-c C] [-f] [--tail N]   a container's log, from the kubelet of the pod's node
  berth exec POD [-c C] [-i] [-t] -- CMD  run a command in a pod's container
  berth auth can-i VERB TYPE[/NAME]    check an action; berth auth whoami
  berth config view|get-contexts|use-context|set-context|set-cluster|set-credentials
  berth certs [--dir DIR] [--node NAME]   create the cluster CA and component certificates
  berth get csr ; berth certificate approve|deny NAME   node certificate requests
  berth api-resources             the kinds the cluster stores
  berth explain pod NAME | -f SNAPSHOT.yaml   why a pod fits (or not) each node, with scores

Config: --kubeconfig, $BERTH_KUBECONFIG, the local cluster's $BERTH_STATE_DIR/admin.conf, ~/.berth/config

Environment: BERTH_RUN_DIR (sockets, default /run/berth), BERTH_STATE_DIR (state, default /var/lib/berth)
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'up': {
      let opts;
      try { opts = parseUpArgs(rest); } catch (e) {
        if (e instanceof CommandUsageError) { process.stderr.write(`error: berth up: ${e.message}\nRun 'berth up --help' for usage.\n`); return 2; }
        throw e;
      }
      if (opts === 'help') { process.stdout.write(UP_HELP); return 0; }
      return up(opts);
    }
    case 'init':
    case 'join': {
      const parse = cmd === 'init' ? parseInitArgs : parseJoinArgs;
      let opts;
      try { opts = parse(rest); } catch (e) {
        if (e instanceof CommandUsageError) { process.stderr.write(`error: berth ${cmd}: ${e.message}\nRun 'berth ${cmd} --help' for usage.\n`); return 2; }
        throw e;
      }
      if (opts === 'help') { process.stdout.write(cmd === 'init' ? INIT_HELP : JOIN_HELP); return 0; }
      return cmd === 'init' ? init(opts) : join(opts as Parameters<typeof join>[0]);
    }
    case 'down':
      if (rest.length) { process.stderr.write(`error: berth down takes no arguments, got "${rest[0]}"\n`); return 2; }
      return down();
    case 'status': {
      const st = await status();
      for (const s of st) process.stdout.write(`${s.name.padEnd(26)} ${s.socket.padEnd(60)} ${s.health}\n`);
      return st.every((s) => s.health === 'SERVING') ? 0 : 1;
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
