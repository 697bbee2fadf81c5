export {
  EtcdV2Client,
  normalizeKey,
  type Node as V2Node,
  type Response as V2Response,
  type GetOptions as V2GetOptions,
  type SetOptions as V2SetOptions,
  type DeleteOptions as V2DeleteOptions,
  type V2Member,
  type V2Version,
  type V2User,
  type V2Role,
  type V2Permissions,
} from './client';
export { EtcdError, EtcdErrorCode, EtcdHttpError, EtcdClusterUnavailableError } from './errors';
export type { EtcdV2Options, EtcdV2Tls } from './transport';
export { V2Watcher, type V2WatchOptions } from './watch';
