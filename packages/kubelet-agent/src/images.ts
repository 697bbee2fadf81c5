// Image pulls per imagePullPolicy with the kubelet's reasons and events: Always pulls, IfNotPresent
// pulls when missing, Never fails with ErrImageNeverPull when missing; a failed pull is
// ErrImagePull and the retries back off (10 s doubling to 300 s) as ImagePullBackOff.
import type { core } from '@berth/api';
import { defaultPullPolicy } from '@berth/apimachinery';
import { CrashLoopBackoff } from './backoff';
import type { Clock } from './clock';
import { fmtDelay } from './pod-actions';

export class ImagePullError extends Error {
  constructor(readonly reason: 'ErrImagePull' | 'ImagePullBackOff' | 'ErrImageNeverPull' | 'InvalidImageName', message: string) {
    super(message);
    this.name = 'ImagePullError';
  }
}

export interface ImageAccess {
  /** The image's id if present on the node. */
  present(image: string): Promise<string | undefined>;
  /** Pulls and returns the image id. */
  pull(image: string): Promise<string>;
}

export type RecordEvent = (type: 'Normal' | 'Warning', reason: string, message: string) => void;

const IMAGE_REF = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$/;

export class ImagePuller {
  private readonly backoff: CrashLoopBackoff;
  private readonly lastFailure = new Map<string, number>();

  constructor(private readonly access: ImageAccess, private readonly clock: Clock) {
    this.backoff = new CrashLoopBackoff(clock);
  }

  /** Ensures the container's image is there; returns its id or throws ImagePullError. */
  async ensure(pod: core.Pod, c: core.Container, record: RecordEvent): Promise<string> {
    const image = c.image;
    if (!image || !IMAGE_REF.test(image)) {
      const msg = `Failed to apply default image tag ${JSON.stringify(image)}: couldn't parse image name ${JSON.stringify(image)}: invalid reference format`;
      record('Warning', 'InspectFailed', msg);
      throw new ImagePullError('InvalidImageName', msg);
    }
    const policy = c.imagePullPolicy || defaultPullPolicy(image);
    if (!['Always', 'IfNotPresent', 'Never'].includes(policy)) throw new ImagePullError('ErrImagePull', `imagePullPolicy: unsupported value ${JSON.stringify(policy)} (Always, IfNotPresent, Never)`);
    const have = policy === 'Always' ? undefined : await this.access.present(image);
    if (have) {
      record('Normal', 'Pulled', `Container image "${image}" already present on machine`);
      return have;
    }
    if (policy === 'Never') {
      const msg = `Container image "${image}" is not present with pull policy of Never`;
      record('Warning', 'ErrImageNeverPull', msg);
      throw new ImagePullError('ErrImageNeverPull', msg);
    }
    const key = `${pod.metadata?.uid}/${image}`;
    const failedAt = this.lastFailure.get(key);
    if (failedAt !== undefined && this.backoff.remaining(key, failedAt) > 0) {
      const msg = `Back-off pulling image "${image}"`;
      record('Normal', 'BackOff', msg);
      throw new ImagePullError('ImagePullBackOff', msg);
    }
    record('Normal', 'Pulling', `Pulling image "${image}"`);
    const t0 = this.clock.now();
    try {
      const id = await this.access.pull(image);
      this.lastFailure.delete(key);
      this.backoff.forget(key);
      record('Normal', 'Pulled', `Successfully pulled image "${image}" in ${fmtMs(this.clock.now() - t0)}`);
      return id;
    } catch (e) {
      this.lastFailure.set(key, this.clock.now());
      const delay = this.backoff.next(key);
      const msg = `Failed to pull image "${image}": ${(e as Error).message}`;
      record('Warning', 'Failed', msg);
      throw new ImagePullError('ErrImagePull', `${msg} (next attempt in ${fmtDelay(delay)})`);
    }
  }
}

function fmtMs(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(3).replace(/\.?0+$/, '')}s`;
}
