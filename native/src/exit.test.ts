// exitNow on the real addon: it ends the process with the code at once (no 'exit' handlers, so
// none of Node's teardown), and is a no-op while the addon is not loaded.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const dist = path.resolve(__dirname, '..', 'dist', 'index.js');

function node(script: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('exitNow', () => {
  it("exits with the code at once once the addon is loaded: no 'exit' handler runs", () => {
    const r = node(`
      const n = require(${JSON.stringify(dist)});
      process.on('exit', () => require('fs').writeSync(1, 'exit handler ran'));
      n.containerSyscalls.pidfdOpen(process.pid); // loads the addon
      require('fs').writeSync(1, 'before;');
      n.exitNow(7);
      require('fs').writeSync(1, 'after');`);
    expect(r.status).toBe(7);
    expect(r.out).toBe('before;');
  });

  it('returns without the addon loaded (loading it only to exit would cost more)', () => {
    const r = node(`
      const n = require(${JSON.stringify(dist)});
      n.exitNow(7);
      require('fs').writeSync(1, 'still here');`);
    expect(r.status).toBe(0);
    expect(r.out).toBe('still here');
  });
});
