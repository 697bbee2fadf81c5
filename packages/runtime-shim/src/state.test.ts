// StateStore.remove on a real filesystem: every kind of entry a container's state dir can hold
// goes, a symlink is removed without touching what it points to, and a second remove is a no-op.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { StateStore, unlinkIfExists } from './state';

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
