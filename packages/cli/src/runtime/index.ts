// `berth runtime ...`: the crictl-like command group. The image commands are here; pods, ps,
// inspect, exec, logs and stats arrive with the container side of issue #8.
import { runtime } from '@berth/api';
import { createClient, fromServiceError, isServiceError } from '@berth/common';
import { images, importImage, pull, rmi } from './images';
import { RuntimeUsageError, defaultRuntimeIo, takeEndpoint, type RuntimeIo } from './options';

export { defaultRuntimeIo, type RuntimeIo } from './options';

export const RUNTIME_HELP = `berth runtime — talk to a node's runtime-shim directly (like crictl)

Usage:
  berth runtime [--runtime-endpoint unix:///path] COMMAND

Commands:
  images [-q] [--digests] [-o table|json] [IMAGE]   list images
  pull [--creds USER:PASS] [--platform OS/ARCH] [--insecure] IMAGE
                                                  pull an image, with progress bars
  import [--format oci-layout|docker-archive] [--name REF] FILE|DIR|-
                                                  load a docker-archive or OCI archive tarball,
                                                  or an OCI layout directory
  rmi IMAGE...                                    remove images

The endpoint defaults to $BERTH_RUNTIME_ENDPOINT, else $BERTH_RUN_DIR/runtime-shim.sock.
`;

const COMMANDS = { images, pull, import: importImage, rmi } as const;
const LATER = ['pods', 'ps', 'inspect', 'inspectp', 'exec', 'logs', 'stats'];

export async function runRuntime(argv: string[], io: RuntimeIo = defaultRuntimeIo()): Promise<number> {
  const args = [...argv];
  let client: runtime.ImageServiceClient | undefined;
  let cmd: string | undefined;
  try {
    const endpoint = takeEndpoint(args, io.env);
    cmd = args.shift();
    if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') { io.stdout(RUNTIME_HELP); return 0; }
    if (LATER.includes(cmd)) { io.stderr(`error: "berth runtime ${cmd}" is not built yet (the container side of issue #8)\n`); return 1; }
    const fn = (COMMANDS as Record<string, typeof images>)[cmd];
    if (!fn) { io.stderr(`error: unknown command "${cmd}" for "berth runtime"\nRun 'berth runtime help' for usage.\n`); return 1; }
    client = createClient(runtime.ImageServiceClient, { target: endpoint });
    return await fn(client, io, args);
  } catch (err) {
    if (err instanceof RuntimeUsageError) { io.stderr(`error: berth runtime ${err.command}: ${err.message}\n`); return 2; }
    if (isServiceError(err)) {
      const e = fromServiceError(err) as Error;
      const unreachable = err.code === 14;
      io.stderr(`error: ${unreachable ? `cannot reach the runtime-shim (${err.details}); is it running? (--runtime-endpoint)` : e.message}\n`);
      return 1;
    }
    io.stderr(`error: ${(err as Error).message}\n`);
    return 1;
  } finally {
    client?.close();
  }
}
