// Container logs in the CRI format the kubelet reads: one record per line,
//   <RFC3339Nano timestamp> <stdout|stderr> <F|P> <bytes>
// F ends a line, P is a piece of a line longer than the runtime's buffer (the rest follows).
// The writer rotates by size (<log>.1 is the newest rotated file, <log>.<max_files-1> the
// oldest) and reopens its file on request (the kubelet's own rotation: ReopenContainerLog).
import * as fs from 'node:fs';

export type LogStream = 'stdout' | 'stderr';

/** A line longer than this is written as P pieces (containerd uses 16 KiB too). */
export const MAX_LINE = 16 * 1024;

export interface RotateOptions {
  /** Bytes at which the file is rotated; 0 = never. */
  maxSize: number;
  /** Files kept including the live one (>= 1). */
  maxFiles: number;
}

export const DEFAULT_ROTATE: RotateOptions = { maxSize: 10 * 1024 * 1024, maxFiles: 5 };

const hrBase = process.hrtime.bigint();
const wallBase = BigInt(Date.now()) * 1_000_000n;

/** Now, in nanoseconds since the epoch (wall clock at start + monotonic since). */
function nowNs(): bigint {
  return wallBase + (process.hrtime.bigint() - hrBase);
}

export function rfc3339Nano(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const iso = new Date(ms).toISOString(); // 2026-11-27T00:40:00.123Z
  return `${iso.slice(0, 19)}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}Z`;
}

export class CriLogWriter {
  private fd = -1;
  private size = 0;
  private readonly pending: Record<LogStream, Buffer[]> = { stdout: [], stderr: [] };
  private readonly pendingLen: Record<LogStream, number> = { stdout: 0, stderr: 0 };

  constructor(readonly file: string, private readonly rotate: RotateOptions = DEFAULT_ROTATE) {
    this.open();
  }

  private open(): void {
    this.fd = fs.openSync(this.file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o640);
    this.size = fs.fstatSync(this.fd).size;
  }

  /** Closes and reopens the file at its path (after someone else moved it away). */
  reopen(): void {
    fs.closeSync(this.fd);
    this.open();
  }

  private record(stream: LogStream, tag: 'F' | 'P', line: Buffer): void {
    const head = Buffer.from(`${rfc3339Nano(nowNs())} ${stream} ${tag} `);
    const rec = Buffer.concat([head, line, Buffer.from('\n')]);
    if (this.rotate.maxSize > 0 && this.size > 0 && this.size + rec.length > this.rotate.maxSize) this.rotateNow();
    let off = 0;
    while (off < rec.length) off += fs.writeSync(this.fd, rec, off);
    this.size += rec.length;
  }

  private rotateNow(): void {
    fs.closeSync(this.fd);
    const keep = Math.max(this.rotate.maxFiles, 1) - 1;
    if (keep === 0) {
      fs.rmSync(this.file, { force: true });
    } else {
      fs.rmSync(`${this.file}.${keep}`, { force: true });
      for (let i = keep - 1; i >= 1; i--) {
        try { fs.renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`); } catch { /* not there yet */ }
      }
      fs.renameSync(this.file, `${this.file}.1`);
    }
    this.open();
  }

  /** Bytes read from a stream: complete lines are written now, the rest waits for its newline. */
  write(stream: LogStream, data: Buffer): void {
    let start = 0;
    for (;;) {
      const nl = data.indexOf(10, start);
      if (nl < 0) break;
      const piece = data.subarray(start, nl);
      const line = this.pendingLen[stream] > 0 ? Buffer.concat([...this.pending[stream], piece]) : piece;
      this.pending[stream] = [];
      this.pendingLen[stream] = 0;
      this.emitLine(stream, line, 'F');
      start = nl + 1;
    }
    if (start < data.length) {
      this.pending[stream].push(Buffer.from(data.subarray(start)));
      this.pendingLen[stream] += data.length - start;
      if (this.pendingLen[stream] >= MAX_LINE) {
        const all = Buffer.concat(this.pending[stream]);
        const cut = all.length - (all.length % MAX_LINE);
        for (let i = 0; i < cut; i += MAX_LINE) this.record(stream, 'P', all.subarray(i, i + MAX_LINE));
        this.pending[stream] = cut < all.length ? [all.subarray(cut)] : [];
        this.pendingLen[stream] = all.length - cut;
      }
    }
  }

  private emitLine(stream: LogStream, line: Buffer, tag: 'F'): void {
    for (let i = 0; i + MAX_LINE < line.length; i += MAX_LINE) this.record(stream, 'P', line.subarray(i, i + MAX_LINE));
    this.record(stream, tag, line.subarray(Math.floor(Math.max(line.length - 1, 0) / MAX_LINE) * MAX_LINE));
  }

  /** End of a stream: a last line without newline is still a full line. */
  end(stream: LogStream): void {
    if (this.pendingLen[stream] === 0) return;
    const line = Buffer.concat(this.pending[stream]);
    this.pending[stream] = [];
    this.pendingLen[stream] = 0;
    this.emitLine(stream, line, 'F');
  }

  close(): void {
    this.end('stdout');
    this.end('stderr');
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

export interface LogEntry {
  timestampUs: number;
  stream: LogStream;
  partial: boolean;
  log: Buffer;
}

/** Parses one CRI log record (without its newline); undefined for a malformed one. */
export function parseCriLine(line: Buffer): LogEntry | undefined {
  const s1 = line.indexOf(32);
  const s2 = s1 < 0 ? -1 : line.indexOf(32, s1 + 1);
  const s3 = s2 < 0 ? -1 : line.indexOf(32, s2 + 1);
  if (s3 < 0 && !(s2 > 0 && line.length === s2 + 2)) return undefined;
  const ts = line.subarray(0, s1).toString();
  const stream = line.subarray(s1 + 1, s2).toString();
  const tag = line.subarray(s2 + 1, s3 < 0 ? line.length : s3).toString();
  if ((stream !== 'stdout' && stream !== 'stderr') || (tag !== 'F' && tag !== 'P')) return undefined;
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(ts);
  if (m === null) return undefined;
  const secMs = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(secMs)) return undefined;
  const frac = (m[2] ?? '').padEnd(6, '0').slice(0, 6);
  return { timestampUs: secMs * 1000 + Number(frac), stream, partial: tag === 'P', log: s3 < 0 ? Buffer.alloc(0) : Buffer.from(line.subarray(s3 + 1)) };
}

/** Splits a buffer of records into complete lines; returns them and the unfinished rest. */
export function splitLines(buf: Buffer): { lines: Buffer[]; rest: Buffer } {
  const lines: Buffer[] = [];
  let start = 0;
  for (;;) {
    const nl = buf.indexOf(10, start);
    if (nl < 0) break;
    lines.push(buf.subarray(start, nl));
    start = nl + 1;
  }
  return { lines, rest: buf.subarray(start) };
}
