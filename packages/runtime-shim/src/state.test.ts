// StateStore on a real filesystem: remove() takes every kind of entry a container's state dir can
// hold, a symlink without touching what it points to, and a second remove is a no-op; read() of
// a state this store wrote is served without the file, and stops with remove(). isoTime() prints
// what toISOString() does.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { isoTime, StateStore, unlinkIfExists, type StoredState } from './state';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-state-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('StateStore.remove', () => {
  it('removes files, a fifo, a symlink (not its target) and a subdirectory, then the dir; again is a no-op', () => {
    const store = new StateStore(path.join(tmp, 'root'));
    const dir = store.claim('c1');
    fs.writeFileSync(path.join(dir, 'state.json'), '{}');
    execFileSync('mkfifo', [path.join(dir, 'exec.fifo')]);
    const outside = path.join(tmp, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'keep'), 'x');
    fs.symlinkSync(outside, path.join(dir, 'link'));
    fs.mkdirSync(path.join(dir, 'sub', 'deeper'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'sub', 'deeper', 'f'), 'y');

    store.remove('c1');
    expect(fs.existsSync(dir)).toBe(false);
    expect(fs.readFileSync(path.join(outside, 'keep'), 'utf8')).toBe('x');
    expect(() => store.remove('c1')).not.toThrow();
    // the id can be claimed again
    expect(store.claim('c1')).toBe(dir);
  });

  it('unlinkIfExists: removes a file, is quiet when it is gone, and refuses a directory', () => {
    const f = path.join(tmp, 'f');
    fs.writeFileSync(f, '');
    unlinkIfExists(f);
    expect(fs.existsSync(f)).toBe(false);
    expect(() => unlinkIfExists(f)).not.toThrow();
    expect(() => unlinkIfExists(tmp)).toThrow(/EISDIR|EPERM/);
  });
});

describe('StateStore.read', () => {
  const state = (id: string): StoredState => ({
    id, pid: 1, pidStartTime: '1', bundle: '/b', rootfs: '/b/rootfs', created: 'now', annotations: {}, cgroupPath: `/berth/${id}`, cgroupVersion: 1, cgroupPaths: {}, spec: { ociVersion: '1.0.2' },
  });

  it("serves what this store wrote (the file is written all the same), another store's from the file; remove() ends both", () => {
    const root = path.join(tmp, 'root');
    const store = new StateStore(root);
    store.claim('c1');
    const s = state('c1');
    store.write(s);
    expect(JSON.parse(fs.readFileSync(path.join(root, 'c1', 'state.json'), 'utf8'))).toEqual(s);
    // A second store on the same root (another process) reads the file.
    const other = new StateStore(root);
    expect(other.read('c1')).toEqual(s);
    fs.writeFileSync(path.join(root, 'c1', 'state.json'), JSON.stringify({ ...s, pid: 2 }));
    expect(store.read('c1')).toBe(s);
    expect(other.read('c1').pid).toBe(2);
    store.remove('c1');
    expect(() => store.read('c1')).toThrow(/container does not exist: c1/);
    expect(() => other.read('c1')).toThrow(/container does not exist: c1/);
  });
});

describe('isoTime', () => {
  it('prints what toISOString() prints, from 1970 to 9999, leap days and month ends included', () => {
    const samples = [0, Date.UTC(2000, 1, 29, 23, 59, 59, 999), Date.UTC(2100, 2, 1), Date.UTC(1999, 11, 31, 23, 59, 59, 999), Date.UTC(2024, 1, 29, 12), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.now()];
    let seed = 42;
    for (let i = 0; i < 20_000; i++) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      samples.push(Math.floor((seed / 2 ** 31) * Date.UTC(9999, 11, 31, 23, 59, 59, 999)));
    }
    for (const ms of samples) expect(isoTime(ms), String(ms)).toBe(new Date(ms).toISOString());
    expect(isoTime()).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });
});
