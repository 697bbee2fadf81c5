// Errors of the v2 client. EtcdError is etcd's own error document ({errorCode, message, cause,
// index}); transport failures after every endpoint was tried are EtcdClusterUnavailableError.

/** etcd v2 error codes (etcd's error.go). */
export const EtcdErrorCode = {
  KeyNotFound: 100,
  TestFailed: 101,
  NotFile: 102,
  NotDir: 104,
  NodeExist: 105,
  RootROnly: 107,
  DirNotEmpty: 108,
  Unauthorized: 110,
  PrevValueRequired: 201,
  TTLNaN: 202,
  IndexNaN: 203,
  InvalidField: 209,
  InvalidForm: 210,
  RefreshValue: 211,
  RefreshTTLRequired: 212,
  RaftInternal: 300,
  LeaderElect: 301,
  WatcherCleared: 400,
  EventIndexCleared: 401,
} as const;

export class EtcdError extends Error {
  readonly errorCode: number;
  /** The key or option the error is about (etcd's "cause"). */
  override readonly cause: string;
  /** etcd index when the error happened. */
  readonly index: number;
  readonly endpoint?: string;
  /** etcd's message alone (`message` adds the cause and the code). */
  readonly etcdMessage: string;
  constructor(doc: { errorCode: number; message: string; cause?: string; index?: number }, endpoint?: string) {
    super(`${doc.message}${doc.cause ? ` (${doc.cause})` : ''} [${doc.errorCode}]`);
    this.name = 'EtcdError';
    this.errorCode = doc.errorCode;
    this.cause = doc.cause ?? '';
    this.index = doc.index ?? 0;
    this.endpoint = endpoint;
    this.etcdMessage = doc.message;
  }
}

/** A non-etcd HTTP answer (e.g. 403 from v2 auth, 404 on a disabled API). */
export class EtcdHttpError extends Error {
  constructor(readonly status: number, readonly body: string, readonly endpoint: string) {
    super(`etcd ${endpoint} answered HTTP ${status}: ${body.trim().slice(0, 200)}`);
    this.name = 'EtcdHttpError';
  }
}

/** Every endpoint failed (or the request was in flight when its member failed). */
export class EtcdClusterUnavailableError extends Error {
  constructor(readonly errors: { endpoint: string; error: Error }[], message = 'etcd cluster is unavailable or misconfigured') {
    super(`${message}; ${errors.map((e, i) => `error #${i}: ${e.endpoint}: ${e.error.message}`).join('; ')}`);
    this.name = 'EtcdClusterUnavailableError';
  }
}
