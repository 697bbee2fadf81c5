// `berth runtime ...`: the crictl-like command group: images (images.ts) and pod sandboxes and
// containers (containers.ts), each against the runtime-shim's ImageService or RuntimeService.
import { runtime } from '@berth/api';
import { createClient, fromServiceError, isServiceError } from '@berth/common';
import { exec, inspect, inspectp, logs, pods, ps, stats } from './containers';
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
  pods [-q] [--name N] [--namespace NS] [--state ready|notready] [--label K=V] [-o table|json]
                                                  list pod sandboxes
  ps [-a] [-q] [--pod POD] [--name N] [--state S] [--label K=V] [-o table|json]
                                                  list containers (running ones unless -a)
  inspect CONTAINER...                            container status as JSON
  inspectp POD...                                 pod sandbox status as JSON
  exec [-i] [-t] [-s] [--timeout SECONDS] CONTAINER COMMAND [ARG...]
                                                  run a command in a container (-t: in a terminal,
                                                  -s: ExecSync)
  logs [-f] [-t] [-p] [--tail N] [--since 10s|RFC3339] [--limit-bytes N] CONTAINER
                                                  print a container's log
  stats [-a] [--pod POD] [--label K=V] [-o table|json] [CONTAINER...]
                                                  CPU, memory, disk and pids of containers

CONTAINER and POD are ids, unique id prefixes or names.

The endpoint defaults to $BERTH_RUNTIME_ENDPOINT, else $BERTH_RUN_DIR/runtime-shim.sock.
`;

const IMAGE_COMMANDS = { images, pull, import: importImage, rmi } as const;
const RUNTIME_COMMANDS = { pods, ps, inspect, inspectp, exec, logs, stats } as const;

export async function runRuntime(argv: string[], io: RuntimeIo = defaultRuntimeIo()): Promise<number> {
  const args = [...argv];
  let client: { close(): void } | undefined;
  let cmd: string | undefined;
  try {
    const endpoint = takeEndpoint(args, io.env);
    cmd = args.shift();
    if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') { io.stdout(RUNTIME_HELP); return 0; }
    const rfn = (RUNTIME_COMMANDS as Record<string, typeof pods>)[cmd];
    if (rfn) {
      const c = createClient(runtime.RuntimeServiceClient, { target: endpoint });
      client = c;
      return await rfn(c, io, args);
    }
    const fn = (IMAGE_COMMANDS as Record<string, typeof images>)[cmd];
    if (!fn) { io.stderr(`error: unknown command "${cmd}" for "berth runtime"\nRun 'berth runtime help' for usage.\n`); return 1; }
    const c = createClient(runtime.ImageServiceClient, { target: endpoint });
    client = c;
    return await fn(c, io, args);
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
