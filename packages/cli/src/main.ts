// The `berth` command dispatcher. Each command lives in its own module.
import { up, status } from './up';

const HELP = `berth — run and use a Berth cluster

Usage:
  berth up        bring up a local cluster (etcd + the five services) in the foreground
  berth status    show the health of the local services
  berth help      this text

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
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP);
      return 0;
    default:
      process.stderr.write(`error: unknown command "${cmd}" for "berth"\nRun 'berth help' for usage.\n`);
      return 1;
  }
}
