// Journal: the network state on disk as an append-only file of JSON lines, one per change.
//
// Why: a pod setup changes state twice (address claim, attachment record) and a teardown
// twice more. As files of their own each change costs an inode create or unlink on ext4
// (~0.1-0.3 ms each, journalled metadata); appended to an open file it is one write(2) of a few
// hundred bytes (~3 us). No fsync: the state must survive a crash of this process (the page
// cache does); after a machine crash no pod network namespace survives either, and the live
// sandbox list given to GC frees whatever the journal still holds.
//
// One process at a time: the journal is guarded by flock(2) on `<file>.lock` for as long as it
// is open, so the daemon, a standalone berth-cni invocation or a test never write one journal
// together (a second opener waits, or is told who holds it). The kernel drops the lock when
// its holder dies, so a kill -9 never leaves it stuck.
//
// Replay: entries are applied in order by the owner's `apply`. A torn last line (a crash in the
// middle of a write) is cut off. `compact()` rewrites the live state as a new file and renames
// it over the old one when most of the file is history.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FailedPreconditionError } from '@berth/common';
import { lockFile } from '@berth/native';

export interface JournalOptions {
  /** How long to wait for another process holding the journal (default 0: fail at once). */
  waitMs?: number;
}

export class Journal<E> {
  private fd: number;
  private lockFd: number;
  /** Entries in the file. */
  private lines = 0;

  private constructor(readonly file: string, lockFd: number) {
    this.lockFd = lockFd;
    this.fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600);
  }

  /** Opens (creating) the journal at `file`, holding its lock; `replay` receives every entry in order. */
  static async open<E>(file: string, replay: (entry: E) => void, opts: JournalOptions = {}): Promise<Journal<E>> {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const lockPath = `${file}.lock`;
    const lockFd = fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    try {
      const deadline = Date.now() + (opts.waitMs ?? 0);
      while (!lockFile(lockFd, { exclusive: true, wait: false })) {
        if (Date.now() >= deadline) {
          const holder = fs.readFileSync(lockPath, 'utf8').trim();
          throw new FailedPreconditionError(`${file} is in use by another process${holder ? ` (pid ${holder})` : ''}: one cni-manager per state dir`);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      fs.ftruncateSync(lockFd, 0);
      fs.writeSync(lockFd, String(process.pid), 0);
    } catch (err) {
      fs.closeSync(lockFd);
      throw err;
    }
    const j = new Journal<E>(file, lockFd);
    j.replay(replay);
    return j;
  }

  private replay(apply: (entry: E) => void): void {
    const { bytes, entries } = Journal.read(this.file, apply);
    this.lines = entries;
    if (bytes < fs.fstatSync(this.fd).size) fs.ftruncateSync(this.fd, bytes);
  }

  /**
   * Reads the entries of `file` without taking its lock (for inspection: a holder may be
   * appending meanwhile). Returns how many bytes and entries were whole.
   */
  static read<E>(file: string, apply: (entry: E) => void): { bytes: number; entries: number } {
    let buf: Buffer;
    try {
      buf = fs.readFileSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { bytes: 0, entries: 0 };
      throw err;
    }
    let start = 0;
    let entries = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      let entry: E;
      try {
        entry = JSON.parse(buf.subarray(start, nl).toString('utf8')) as E;
      } catch {
        break; // torn by a crash: everything from here on is cut
      }
      apply(entry);
      entries++;
      start = nl + 1;
    }
    return { bytes: start, entries };
  }

  /** Appends one entry: a single write(2). */
  append(entry: E): void {
    const line = Buffer.from(`${JSON.stringify(entry)}\n`, 'utf8');
    const n = fs.writeSync(this.fd, line);
    if (n !== line.length) throw new Error(`${this.file}: short write (${n} of ${line.length} bytes)`);
    this.lines++;
  }

  /** Entries written since the last compaction (or open). */
  get entries(): number { return this.lines; }

  /**
   * Replaces the journal by `live` (the state as entries) when it holds more than `factor`
   * times as many entries (and at least `min`). The rename is atomic: a crash leaves either
   * the old journal or the new one.
   */
  compact(live: () => E[], o: { factor?: number; min?: number } = {}): boolean {
    const state = live();
    if (this.lines < (o.min ?? 256) || this.lines <= state.length * (o.factor ?? 4)) return false;
    const tmp = `${this.file}.compact`;
    fs.writeFileSync(tmp, state.map((e) => `${JSON.stringify(e)}\n`).join(''), { mode: 0o600 });
    fs.renameSync(tmp, this.file);
    fs.closeSync(this.fd);
    this.fd = fs.openSync(this.file, fs.constants.O_RDWR | fs.constants.O_APPEND);
    this.lines = state.length;
    return true;
  }

  /** Closes the journal and releases its lock. */
  close(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    fs.closeSync(this.lockFd);
    this.fd = -1;
    this.lockFd = -1;
  }
}
