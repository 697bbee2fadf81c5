// Garbage collection decisions, as the kubelet makes them:
//  - dead containers: older than minAge; keep at most maxPerPodContainer per (pod, container)
//    and maxContainers in total (spreading the total fairly over the groups first, then the
//    oldest go); every dead container of a pod that is gone is removable;
//  - images: when the image filesystem is at or above highThresholdPercent (85 %), free enough
//    to get down to lowThresholdPercent (80 %), least recently used first, never an image in
//    use or pinned, never one first seen less than minAge ago.
// Pure functions over what the runtime lists; the GC loop applies them through the seams.

export interface DeadContainer {
  id: string;
  podUid: string;
  name: string;
  /** ms since epoch; when it was created (the kubelet's ordering key). */
  createdAt: number;
}

export interface ContainerGcPolicy {
  minAgeMs?: number;
  /** Default 1; <0 means no limit. */
  maxPerPodContainer?: number;
  /** Default -1 (no limit). */
  maxContainers?: number;
}

export function containersToRemove(dead: DeadContainer[], podExists: (uid: string) => boolean, now: number, policy: ContainerGcPolicy = {}): DeadContainer[] {
  const minAge = policy.minAgeMs ?? 0;
  const perGroup = policy.maxPerPodContainer ?? 1;
  const total = policy.maxContainers ?? -1;
  const remove: DeadContainer[] = [];
  const groups = new Map<string, DeadContainer[]>();
  for (const c of dead) {
    if (now - c.createdAt < minAge) continue;
    if (!podExists(c.podUid)) { remove.push(c); continue; }
    const k = `${c.podUid}/${c.name}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = []));
    g.push(c);
  }
  for (const g of groups.values()) g.sort((a, b) => b.createdAt - a.createdAt); // newest first
  const trim = (limit: number) => {
    for (const g of groups.values()) while (g.length > limit) remove.push(g.pop()!);
  };
  if (perGroup >= 0) trim(perGroup);
  if (total >= 0) {
    let count = [...groups.values()].reduce((n, g) => n + g.length, 0);
    if (count > total && groups.size > 0) {
      // First make the per-group limit fit the total, then drop the oldest anywhere.
      trim(Math.max(1, Math.floor(total / groups.size)));
      count = [...groups.values()].reduce((n, g) => n + g.length, 0);
      if (count > total) {
        const rest = [...groups.values()].flat().sort((a, b) => a.createdAt - b.createdAt);
        remove.push(...rest.slice(0, count - total));
      }
    }
  }
  return remove;
}

export interface ImageRecord {
  id: string;
  sizeBytes: number;
  /** ms since epoch when a container last used it (or firstDetected if never). */
  lastUsed: number;
  firstDetected: number;
  pinned?: boolean;
}

export interface ImageGcPolicy {
  highThresholdPercent?: number;
  lowThresholdPercent?: number;
  minAgeMs?: number;
}

export interface ImageFs {
  capacityBytes: number;
  availableBytes: number;
}

export interface ImageGcPlan {
  /** Usage in percent when the decision was made. */
  usagePercent: number;
  bytesToFree: number;
  remove: ImageRecord[];
  /** Bytes the plan frees (may be short of bytesToFree: then the node has disk pressure). */
  freed: number;
}

export function checkImageGcPolicy(p: ImageGcPolicy): Required<ImageGcPolicy> {
  const high = p.highThresholdPercent ?? 85;
  const low = p.lowThresholdPercent ?? 80;
  if (!(high >= 0 && high <= 100)) throw new RangeError(`imageGCHighThresholdPercent: must be within 0-100, got ${high}`);
  if (!(low >= 0 && low <= 100)) throw new RangeError(`imageGCLowThresholdPercent: must be within 0-100, got ${low}`);
  if (low > high) throw new RangeError(`imageGCLowThresholdPercent (${low}) must not be above imageGCHighThresholdPercent (${high})`);
  return { highThresholdPercent: high, lowThresholdPercent: low, minAgeMs: p.minAgeMs ?? 120_000 };
}

export function imagesToRemove(images: ImageRecord[], inUse: ReadonlySet<string>, fsInfo: ImageFs, now: number, policy: ImageGcPolicy = {}): ImageGcPlan {
  const p = checkImageGcPolicy(policy);
  if (fsInfo.capacityBytes <= 0) throw new RangeError('image filesystem capacity: must be positive');
  const usagePercent = Math.floor(((fsInfo.capacityBytes - fsInfo.availableBytes) * 100) / fsInfo.capacityBytes);
  if (usagePercent < p.highThresholdPercent) return { usagePercent, bytesToFree: 0, remove: [], freed: 0 };
  const bytesToFree = Math.floor((fsInfo.capacityBytes * (100 - p.lowThresholdPercent)) / 100) - fsInfo.availableBytes;
  const candidates = images
    .filter((i) => !inUse.has(i.id) && !i.pinned && now - i.firstDetected >= p.minAgeMs)
    .sort((a, b) => a.lastUsed - b.lastUsed || a.firstDetected - b.firstDetected);
  const remove: ImageRecord[] = [];
  let freed = 0;
  for (const i of candidates) {
    if (freed >= bytesToFree) break;
    remove.push(i);
    freed += i.sizeBytes;
  }
  return { usagePercent, bytesToFree, remove, freed };
}
