// Image GC applied through the ImageService seam (in-memory runtime): nothing below the high
// threshold; above it, unused images least recently used first until the low threshold, never an
// image a container (even an exited one) uses, never a pinned one, never one seen for less
// than the minimum age.
import { describe, expect, it } from 'vitest';
import { FakeClock } from './clock';
import { ImageGc } from './image-gc';
import { MemoryRuntime } from './testing/memory-runtime';
import { runtime } from '@berth/api';

const GiB = 1 << 30;

describe('ImageGc', () => {
  it('frees unused images down to the low threshold, oldest use first, keeping images in use', async () => {
    const clock = new FakeClock();
    const rt = new MemoryRuntime(clock);
    for (const [ref, id, size] of [['old:1', 'sha256:a', 4], ['newer:1', 'sha256:b', 4], ['used:1', 'sha256:c', 4], ['fresh:1', 'sha256:d', 4]] as const) {
      rt.images.set(ref, id);
      rt.imageSizes.set(id, size * GiB);
    }
    rt.images.delete('fresh:1');
    let free = 50 * GiB;
    const gc = new ImageGc({ clock, images: rt, runtime: rt, policy: { minAgeMs: 60_000 }, fsInfo: () => ({ capacityBytes: 100 * GiB, availableBytes: free }) });
    // A container (not running) of used:1 keeps it in use.
    const { podSandboxId } = await rt.runPodSandbox(runtime.RunPodSandboxRequest.fromPartial({ config: { metadata: { name: 'p' } } }));
    await rt.createContainer(runtime.CreateContainerRequest.fromPartial({ podSandboxId, config: { metadata: { name: 'c' }, image: { image: 'used:1' } } }));
    expect((await gc.run()).removed).toEqual([]); // 50 % used: below 85 %
    await clock.advance(30_000);
    free = 10 * GiB; // 90 % used: free 10 GiB to reach 80 %, but everything is too young yet
    expect((await gc.run()).removed).toEqual([]);
    await clock.advance(31_000);
    rt.images.set('fresh:1', 'sha256:d'); // first seen now: too young
    const plan = await gc.run();
    expect(plan).toMatchObject({ usagePercent: 90, bytesToFree: 10 * GiB });
    // old:1 and newer:1 were never used: both are oldest by first sighting; 8 GiB < 10 GiB needed.
    expect(plan.removed.sort()).toEqual(['sha256:a', 'sha256:b']);
    expect(plan.freed).toBeLessThan(plan.bytesToFree);
    expect([...rt.images.keys()].sort()).toEqual(['fresh:1', 'used:1']);
  });
});
