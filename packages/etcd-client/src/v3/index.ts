export { EtcdV3Client } from './client';
export type * from './client';
export type { EtcdV3Options, EtcdV3Tls } from './connection';
export { EtcdV3Error, EtcdCompactedError, EtcdLeaseNotFoundError, EtcdAuthError, EtcdArgumentError } from './errors';
export { LeaseKeepAlive, type KeepAliveOptions } from './lease';
export { Watcher, type WatchOptions, type WatchEvent, type WatchResponse } from './watch';
export { prefixEnd, type KeyValue, type Bytes } from './types';
