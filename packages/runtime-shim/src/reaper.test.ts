// Regression: a container init that does not hold for a start (CreateOptions.startAtOnce, as
// RunContainer creates it) can exec and exit before its spawn has reported its pid. The daemon's
// OrphanReaper took such a zombie for an orphan and reaped it, and the create failed with
// "status: read (stage status): EPROTO" (PidOfPidfd of a reaped init), about one run in 500 back
// to back. Tested with the real reaper scanning on every turn of the event loop while each turn
// also keeps the loop busy for a while, which widens that window to most runs.
import * as fs from 'node:fs';

import { containerSyscalls } from '@berth/native';
import { afterAll, describe, expect, it } from 'vitest';

import { OrphanReaper } from './reaper';
import { Harness } from './testing/harness';
import { uniqueId } from './testing/bundle';

const h = new Harness({ cgroupPool: 2 });
afterAll(async () => {
  await h.cleanup();
  await h.rt.close();
});

describe('OrphanReaper and inits that start at once', () => {
  it('never takes the exit of an init whose spawn is still in flight', async () => {
    const reaper = new OrphanReaper(containerSyscalls, () => h.rt.ownPids, () => h.rt.initsInFlight > 0);
    const b = h.bundle(['/bin/true']);
    const nul = fs.openSync('/dev/null', 'r+');
    const stolen: number[] = [];
    let polling = true;
    const poll = (): void => {
      if (!polling) return;
      stolen.push(...reaper.reap());
      const until = process.hrtime.bigint() + 1_500_000n; // 1.5 ms of a busy loop
      while (process.hrtime.bigint() < until);
      setImmediate(poll);
    };
    setImmediate(poll);
    const exits: Array<number | null> = [];
    try {
      for (let i = 0; i < 40; i++) {
        const id = uniqueId('rp');
        const c = await h.rt.create(id, { bundle: b.dir, stdio: [nul, nul, nul], startAtOnce: true });
        expect(c.started).toBe(true);
        exits.push((await c.exited).code);
        await h.rt.delete(id, true);
      }
    } finally {
      polling = false;
      fs.closeSync(nul);
    }
    expect(stolen).toEqual([]);
    expect(exits).toEqual(Array.from({ length: 40 }, () => 0));
  }, 60_000);
});
