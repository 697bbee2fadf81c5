// Image garbage collection applied to the runtime: the images the ImageService lists, their first
// sighting and last use as this agent saw them (a container of any state using an image keeps it
// in use), the image filesystem's fullness (statfs of the mountpoint ImageFsInfo names), the
// decision of gc.ts (85 % → 80 %, least recently used first, never in use or pinned, minimum
// age), then RemoveImage for each chosen image.
import * as fs from 'node:fs';
import { runtime } from '@berth/api';
import type { Clock } from './clock';
import { imagesToRemove, type ImageFs, type ImageGcPlan, type ImageGcPolicy, type ImageRecord } from './gc';
import type { PodImages, PodRuntime } from './seams';

export interface ImageGcOptions {
  clock: Clock;
  images: PodImages;
  runtime: PodRuntime;
  policy?: ImageGcPolicy;
  /** Capacity and free space of the image filesystem (default: statfs of ImageFsInfo's mountpoint). */
  fsInfo?: (mountpoint: string) => ImageFs;
}

export function statfsImageFs(mountpoint: string): ImageFs {
  const st = fs.statfsSync(mountpoint);
  return { capacityBytes: st.blocks * st.bsize, availableBytes: st.bavail * st.bsize };
}

export class ImageGc {
  private readonly seen = new Map<string, { firstDetected: number; lastUsed: number }>();

  constructor(private readonly o: ImageGcOptions) {}

  /** One round: returns the plan it carried out. */
  async run(): Promise<ImageGcPlan & { removed: string[] }> {
    const { clock, images, runtime: rt } = this.o;
    const now = clock.now();
    const [list, ctrs, fsInfo] = await Promise.all([
      images.listImages(runtime.ListImagesRequest.fromPartial({})),
      rt.listContainers(runtime.ListContainersRequest.fromPartial({})),
      images.imageFsInfo({}),
    ]);
    const byRef = new Map<string, string>();
    for (const i of list.images) for (const t of [...i.repoTags, ...i.repoDigests, i.id]) byRef.set(t, i.id);
    const inUse = new Set<string>();
    for (const c of ctrs.containers) {
      const id = c.imageId || byRef.get(c.image?.image ?? '') || byRef.get(c.imageRef);
      if (id) inUse.add(id);
    }
    const records: ImageRecord[] = [];
    for (const i of list.images) {
      let s = this.seen.get(i.id);
      if (!s) this.seen.set(i.id, (s = { firstDetected: now, lastUsed: 0 }));
      if (inUse.has(i.id)) s.lastUsed = now;
      records.push({ id: i.id, sizeBytes: Number(i.size), lastUsed: s.lastUsed || s.firstDetected, firstDetected: s.firstDetected, pinned: i.pinned });
    }
    for (const id of [...this.seen.keys()]) if (!list.images.some((i) => i.id === id)) this.seen.delete(id);
    const mount = fsInfo.imageFilesystems[0]?.fsId?.mountpoint;
    if (!mount) throw new Error('ImageFsInfo named no image filesystem');
    const plan = imagesToRemove(records, inUse, (this.o.fsInfo ?? statfsImageFs)(mount), now, this.o.policy);
    const removed: string[] = [];
    for (const r of plan.remove) {
      await images.removeImage(runtime.RemoveImageRequest.fromPartial({ image: { image: r.id } }));
      this.seen.delete(r.id);
      removed.push(r.id);
    }
    return { ...plan, removed };
  }
}
