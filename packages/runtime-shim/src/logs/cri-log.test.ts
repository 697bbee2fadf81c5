// The CRI log writer and reader on real files: lines split across writes, long lines as P
// pieces, both streams, the last unterminated line, rotation by size and count, and reading
// back with tail, since and limit.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { CriLogWriter, MAX_LINE, parseCriLine } from './cri-log';
import { readLog } from './reader';

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-crilog-')); });
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

const records = (file: string): string[] => fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => l.replace(/^\S+ /, ''));

async function all(file: string, o: Parameters<typeof readLog>[1] = {}): Promise<string[]> {
  const out: string[] = [];
  for await (const e of readLog(file, o)) out.push(`${e.stream} ${e.partial ? 'P' : 'F'} ${e.log.toString()}`);
  return out;
}

describe('CRI log', () => {
  it('writes whole lines per stream, long lines as P pieces, and the unterminated rest at the end', async () => {
    const file = path.join(dir, '0.log');
    const w = new CriLogWriter(file, { maxSize: 0, maxFiles: 1 });
    w.write('stdout', Buffer.from('hel'));
    w.write('stderr', Buffer.from('oops\n'));
    w.write('stdout', Buffer.from('lo\nwor'));
    w.write('stdout', Buffer.from('ld\n\n'));
    w.write('stdout', Buffer.from('x'.repeat(MAX_LINE * 2 + 5)));
    w.write('stdout', Buffer.from('\n'));
    w.write('stderr', Buffer.from('no newline'));
    w.close();
    const got = records(file);
    expect(got.slice(0, 4)).toEqual(['stderr F oops', 'stdout F hello', 'stdout F world', 'stdout F ']);
    expect(got.slice(4).map((r) => r.slice(0, 9))).toEqual(['stdout P ', 'stdout P ', 'stdout F ', 'stderr F ']);
    expect(got[4]!.length - 9).toBe(MAX_LINE);
    expect(got[6]).toBe('stdout F xxxxx');
    expect(got[7]).toBe('stderr F no newline');
    expect(fs.readFileSync(file, 'utf8')).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z stderr F oops\n/);
    // Read back: a line is its P pieces plus the F that ends it (tail counts lines, not pieces).
    expect((await all(file, { tailLines: 2 })).map((l) => l.slice(0, 8))).toEqual(['stdout P', 'stdout P', 'stdout F', 'stderr F']);
    expect(await all(file, { limitBytes: 6 })).toEqual(['stderr F oops', 'stdout F hello']);
  });

  it('rotates by size and keeps max_files files, the live one included', () => {
    const file = path.join(dir, '0.log');
    const w = new CriLogWriter(file, { maxSize: 300, maxFiles: 3 });
    for (let i = 0; i < 60; i++) w.write('stdout', Buffer.from(`line ${i}\n`));
    w.close();
    expect(fs.readdirSync(dir).sort()).toEqual(['0.log', '0.log.1', '0.log.2']);
    for (const f of fs.readdirSync(dir)) expect(fs.statSync(path.join(dir, f)).size).toBeLessThanOrEqual(300);
    const newest = records(file);
    expect(newest.at(-1)).toBe('stdout F line 59');
    const older = records(`${file}.1`);
    expect(Number(older.at(-1)!.split(' ').at(-1)) + 1).toBe(Number(newest[0]!.split(' ').at(-1)));
  });

  it('parses timestamps to microseconds and refuses malformed records', () => {
    expect(parseCriLine(Buffer.from('2026-11-27T01:02:03.123456789Z stdout F hi'))).toEqual({ timestampUs: Date.UTC(2026, 10, 27, 1, 2, 3) * 1000 + 123456, stream: 'stdout', partial: false, log: Buffer.from('hi') });
    expect(parseCriLine(Buffer.from('2026-11-27T01:02:03Z stderr P '))).toMatchObject({ stream: 'stderr', partial: true, log: Buffer.alloc(0) });
    for (const bad of ['garbage', '2026-11-27T01:02:03Z stdin F x', '2026-11-27T01:02:03Z stdout X x', 'yesterday stdout F x']) expect(parseCriLine(Buffer.from(bad))).toBeUndefined();
  });
});
