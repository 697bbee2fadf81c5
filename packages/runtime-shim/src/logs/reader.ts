// Reads a container's CRI log back as frames: the rotated files oldest first, then the live
// one; `tail` keeps the last N lines, `follow` keeps reading as the monitor writes (and across
// a rotation: a new file at the path is picked up once the old one is read to its end).
import * as fs from 'node:fs';

import { parseCriLine, splitLines, type LogEntry } from './cri-log';

export interface ReadOptions {
  tailLines?: number;
  sinceUs?: number;
  limitBytes?: number;
  follow?: boolean;
  /** Follow ends once this says the writer is gone and the file is read to its end. */
  writerDone?: () => boolean;
  signal?: AbortSignal;
  /** How often a followed file is checked for more. */
  pollMs?: number;
}

function rotatedFiles(file: string): string[] {
  const out: string[] = [];
  for (let i = 1; fs.existsSync(`${file}.${i}`); i++) out.push(`${file}.${i}`);
  return out.reverse();
}

function parseAll(buf: Buffer): LogEntry[] {
  const out: LogEntry[] = [];
  for (const l of splitLines(buf).lines) {
    const e = parseCriLine(l);
    if (e !== undefined) out.push(e);
  }
  return out;
}

/** The entries of the last `n` lines (a line is its P pieces and the F that ends it). */
function lastLines(entries: LogEntry[], n: number): LogEntry[] {
  if (n <= 0) return [];
  let count = 0;
  for (let i = entries.length - 1; i >= 0; i--) {
    if (!entries[i]!.partial) {
      count++;
      if (count > n) return entries.slice(i + 1);
    }
  }
  return entries;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });

export async function* readLog(file: string, o: ReadOptions = {}): AsyncGenerator<LogEntry> {
  let sent = 0;
  const keep = (e: LogEntry): boolean => (o.sinceUs === undefined || o.sinceUs === 0 || e.timestampUs >= o.sinceUs);
  const over = (): boolean => o.limitBytes !== undefined && sent >= o.limitBytes;

  // What is there now.
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    if (!o.follow) return;
    fd = -1;
  }
  let history: LogEntry[] = [];
  for (const f of rotatedFiles(file)) {
    try { history.push(...parseAll(fs.readFileSync(f))); } catch { /* rotated away meanwhile */ }
  }
  let pos = 0;
  let rest = Buffer.alloc(0);
  if (fd >= 0) {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(size);
    pos = fs.readSync(fd, buf, 0, size, 0);
    const { lines, rest: r } = splitLines(buf.subarray(0, pos));
    rest = Buffer.from(r);
    for (const l of lines) {
      const e = parseCriLine(l);
      if (e !== undefined) history.push(e);
    }
  }
  history = history.filter(keep);
  if (o.tailLines !== undefined) history = lastLines(history, o.tailLines);
  for (const e of history) {
    if (over()) break;
    sent += e.log.length;
    yield e;
  }
  if (!o.follow || over()) {
    if (fd >= 0) fs.closeSync(fd);
    return;
  }
  // Follow.
  try {
    const chunk = Buffer.alloc(64 * 1024);
    let finalPass = false;
    for (;;) {
      if (o.signal?.aborted === true || over()) return;
      let got = 0;
      if (fd >= 0) {
        for (;;) {
          const n = fs.readSync(fd, chunk, 0, chunk.length, pos);
          if (n === 0) break;
          pos += n;
          got += n;
          const { lines, rest: r } = splitLines(Buffer.concat([rest, chunk.subarray(0, n)]));
          rest = Buffer.from(r);
          for (const l of lines) {
            const e = parseCriLine(l);
            if (e === undefined || !keep(e)) continue;
            sent += e.log.length;
            yield e;
            if (over()) return;
          }
        }
      }
      if (got > 0) continue;
      // Read to the end: a new file at the path means a rotation; the old one is finished.
      let st: fs.Stats | undefined;
      try { st = fs.statSync(file); } catch { st = undefined; }
      const cur = fd >= 0 ? fs.fstatSync(fd) : undefined;
      if (st !== undefined && (cur === undefined || st.ino !== cur.ino || st.size < pos)) {
        if (fd >= 0) fs.closeSync(fd);
        fd = fs.openSync(file, 'r');
        pos = 0;
        rest = Buffer.alloc(0);
        continue;
      }
      // One more pass after the writer is done: it may have written between our read and its exit.
      if (o.writerDone?.() === true) {
        if (finalPass) return;
        finalPass = true;
        continue;
      }
      await sleep(o.pollMs ?? 100, o.signal);
    }
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}
