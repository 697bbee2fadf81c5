// Garbage collection and eviction decisions as tables, and the eviction signals read from this
// machine (nodefs compared with df; a synthetic memory threshold above what is available is met).
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import { core } from '@berth/api';
import { describe, expect, it } from 'vitest';
import { evictionMessage, parseThreshold, rankForEviction, readSignals, thresholdsMet } from './eviction';
import { containersToRemove, imagesToRemove, type DeadContainer, type ImageRecord } from './gc';

const M = 60_000;
const now = Date.parse('2026-06-01T00:00:00Z');
const dead = (id: string, podUid: string, name: string, minutesAgo: number): DeadContainer => ({ id, podUid, name, createdAt: now - minutesAgo * M });

describe('container GC', () => {
  const list = [
    dead('a1', 'p1', 'app', 50), dead('a2', 'p1', 'app', 40), dead('a3', 'p1', 'app', 30),
    dead('b1', 'p1', 'side', 20), dead('b2', 'p1', 'side', 10),
    dead('c1', 'p2', 'app', 5), dead('c2', 'p2', 'app', 0.5),
    dead('g1', 'gone', 'app', 1), dead('g2', 'gone', 'app', 90),
  ];
  const exists = (uid: string) => uid !== 'gone';
  const ids = (r: DeadContainer[]) => r.map((c) => c.id).sort();
  it.each([
    ['defaults: keep the newest one per container, remove everything of gone pods', {}, ['a1', 'a2', 'b1', 'c1', 'g1', 'g2']],
    ['minAge protects young containers (also of gone pods)', { minAgeMs: 2 * M }, ['a1', 'a2', 'b1', 'g2']],
    ['two per container', { maxPerPodContainer: 2 }, ['a1', 'g1', 'g2']],
    ['no per-container limit, total 4 over 3 groups: each group trimmed to floor(4/3) = 1', { maxPerPodContainer: -1, maxContainers: 4 }, ['a1', 'a2', 'b1', 'c1', 'g1', 'g2']],
    ['total 6 over 3 groups: each keeps its 2 newest', { maxPerPodContainer: -1, maxContainers: 6 }, ['a1', 'g1', 'g2']],
    ['total 2 over 3 groups: one each is kept first, then the oldest go', { maxPerPodContainer: -1, maxContainers: 2 }, ['a1', 'a2', 'a3', 'b1', 'c1', 'g1', 'g2']],
  ])('%s', (_n, policy, want) => {
    expect(ids(containersToRemove(list, exists, now, policy))).toEqual(want);
  });
});

describe('image GC', () => {
  const GB = 1e9;
  const img = (id: string, sizeGB: number, usedMinutesAgo: number, detectedMinutesAgo = 600, pinned = false): ImageRecord => ({ id, sizeBytes: sizeGB * GB, lastUsed: now - usedMinutesAgo * M, firstDetected: now - detectedMinutesAgo * M, pinned });
  const images = [img('old', 3, 500), img('mid', 4, 300), img('busy', 10, 900), img('new', 2, 100), img('fresh', 5, 0.5, 1), img('pause', 1, 1000, 1000, true)];
  const inUse = new Set(['busy']);
  it.each([
    ['below the high threshold: nothing', { capacityBytes: 100 * GB, availableBytes: 16 * GB }, { usagePercent: 84, bytesToFree: 0, remove: [] }],
    ['at 90 %: free 10 GB to reach 80 %, least recently used first, skipping in use, pinned and young', { capacityBytes: 100 * GB, availableBytes: 10 * GB }, { usagePercent: 90, bytesToFree: 10 * GB, remove: ['old', 'mid', 'new'], freed: 9 * GB }],
    ['at 85 %: free 5 GB', { capacityBytes: 100 * GB, availableBytes: 15 * GB }, { usagePercent: 85, bytesToFree: 5 * GB, remove: ['old', 'mid'], freed: 7 * GB }],
  ])('%s', (_n, fsInfo, want) => {
    const plan = imagesToRemove(images, inUse, fsInfo, now);
    expect({ ...plan, remove: plan.remove.map((i) => i.id) }).toMatchObject(want);
  });
  it('validates the thresholds naming the option', () => {
    expect(() => imagesToRemove([], inUse, { capacityBytes: 1, availableBytes: 1 }, now, { highThresholdPercent: 70, lowThresholdPercent: 80 })).toThrow(/imageGCLowThresholdPercent \(80\) must not be above imageGCHighThresholdPercent \(70\)/);
    expect(() => imagesToRemove([], inUse, { capacityBytes: 1, availableBytes: 1 }, now, { highThresholdPercent: 101 })).toThrow(/imageGCHighThresholdPercent: must be within 0-100/);
  });
});

describe('eviction', () => {
  it('reads the signals from this machine', () => {
    const s = readSignals(os.tmpdir());
    const df = BigInt(execFileSync('df', ['-B1', '--output=avail', os.tmpdir()], { encoding: 'utf8' }).split('\n')[1].trim());
    const diff = s['nodefs.available'] - df;
    expect(diff < 0n ? -diff : diff).toBeLessThan(64n * 1024n * 1024n); // other tests write meanwhile
    expect(s['memory.available']).toBeGreaterThan(0n);
    expect(s['memory.available']).toBeLessThanOrEqual(s.capacity.memory);
    expect(s['pid.available']).toBeGreaterThan(0n);
    // A synthetic threshold above what is free is met; a tiny one is not.
    const above = `${(s['memory.available'] + 1024n ** 3n).toString()}`;
    expect(thresholdsMet(s, { 'memory.available': above })).toEqual(['memory.available']);
    expect(thresholdsMet(s, { 'memory.available': '1Mi', 'nodefs.available': '0%' })).toEqual([]);
    expect(thresholdsMet(s, { 'nodefs.available': '100%' })).toEqual(['nodefs.available']);
  });

  it('parses thresholds and names the option on errors', () => {
    expect(parseThreshold('memory.available', '100Mi', 0n)).toBe(100n * 1024n * 1024n);
    expect(parseThreshold('nodefs.available', '10%', 1000n)).toBe(100n);
    expect(parseThreshold('nodefs.available', '7.5%', 1000n)).toBe(75n);
    expect(() => parseThreshold('memory.available', 'lots', 0n)).toThrow(/evictionHard\.memory\.available: quantities must match/);
    expect(() => parseThreshold('nodefs.available', '120%', 0n)).toThrow(/evictionHard\.nodefs\.available: percentage must be within 0-100%/);
  });

  it('ranks BestEffort and over-request pods first, then by priority, then by excess', () => {
    const Mi = 1024n * 1024n;
    const pod = (name: string, req: string | undefined, priority = 0) => core.Pod.fromPartial({ metadata: { name }, spec: { priority, containers: [{ name: 'c', resources: { requests: req ? { memory: req } : {} } }] } });
    const ranked = rankForEviction([
      { pod: pod('guaranteed-ish-under', '512Mi'), usage: 100n * Mi },
      { pod: pod('burstable-over-a-little', '100Mi'), usage: 150n * Mi },
      { pod: pod('besteffort', undefined), usage: 10n * Mi },
      { pod: pod('burstable-over-a-lot', '100Mi'), usage: 600n * Mi },
      { pod: pod('critical-over', '10Mi', 2_000_000_000), usage: 900n * Mi },
      { pod: pod('under-low-priority', '512Mi', -10), usage: 1n * Mi },
    ], 'memory.available');
    expect(ranked.map((r) => r.pod.metadata!.name)).toEqual(['burstable-over-a-lot', 'burstable-over-a-little', 'besteffort', 'critical-over', 'under-low-priority', 'guaranteed-ish-under']);
    expect(evictionMessage('memory.available', '100Mi', 600n * Mi, 100n * Mi, 'c')).toBe(`The node was low on resource: memory. Threshold quantity: 100Mi. Container c was using ${600n * Mi}, request is ${100n * Mi}.`);
  });
});
