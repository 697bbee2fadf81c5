// Shared bits of `berth runtime`: the endpoint option, the I/O seam tests replace, usage errors.
import type { Readable } from 'node:stream';
import { defaultSocket } from '@berth/common';

export interface RuntimeIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
  /** Whether stderr is a terminal (progress bars redraw in place). */
  tty: boolean;
  stdinStream: () => Readable;
  /** Our terminal's size when stdout is a terminal (exec -t gives it to the container's). */
  terminalSize?: () => { width: number; height: number } | undefined;
  /** Calls `cb` when our terminal is resized; returns the unsubscribe. */
  onResize?: (cb: () => void) => () => void;
}

export function defaultRuntimeIo(): RuntimeIo {
  return {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    env: process.env,
    tty: !!process.stderr.isTTY,
    stdinStream: () => process.stdin,
    terminalSize: () => (process.stdout.isTTY ? { width: process.stdout.columns, height: process.stdout.rows } : undefined),
    onResize: (cb) => {
      process.stdout.on('resize', cb);
      return () => process.stdout.off('resize', cb);
    },
  };
}

export class RuntimeUsageError extends Error {
  constructor(readonly command: string, message: string) { super(message); }
}

/** `--runtime-endpoint unix:///path` (or $BERTH_RUNTIME_ENDPOINT), default the local runtime-shim. */
export function takeEndpoint(args: string[], env: NodeJS.ProcessEnv): string {
  const i = args.findIndex((a) => a === '--runtime-endpoint' || a === '-r' || a.startsWith('--runtime-endpoint='));
  if (i < 0) return env.BERTH_RUNTIME_ENDPOINT || defaultSocket('runtime-shim', env);
  const a = args[i];
  if (a.includes('=')) { args.splice(i, 1); return a.slice(a.indexOf('=') + 1); }
  const v = args[i + 1];
  if (!v) throw new RuntimeUsageError('runtime', '--runtime-endpoint needs a value (unix:///path)');
  args.splice(i, 2);
  return v;
}

export function takeFlag(args: string[], name: string): boolean {
  const i = args.indexOf(name);
  if (i < 0) return false;
  args.splice(i, 1);
  return true;
}

export function takeValue(args: string[], name: string, command: string): string | undefined {
  const i = args.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  const a = args[i];
  if (a.includes('=')) { args.splice(i, 1); return a.slice(name.length + 1); }
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new RuntimeUsageError(command, `${name} needs a value`);
  args.splice(i, 2);
  return v;
}

export function noMoreFlags(args: string[], command: string): void {
  const f = args.find((a) => a.startsWith('-') && a !== '-');
  if (f) throw new RuntimeUsageError(command, `unknown flag "${f}"`);
}

export function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i] + 3))).join('').trimEnd()).join('\n') + '\n';
}
