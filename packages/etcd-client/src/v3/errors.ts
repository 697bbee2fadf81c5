// Errors of the v3 client. Every failed call surfaces as an EtcdV3Error carrying the gRPC status
// code and etcd's own message ("etcdserver: ..."/"mvcc: ..."), so callers branch on `code` or on
// one of the subclasses below instead of parsing strings.
import { status as Status } from '@grpc/grpc-js';

export class EtcdV3Error extends Error {
  /** gRPC status code (`@grpc/grpc-js` `status`). */
  readonly code: number;
  /** Name of the gRPC code, e.g. `UNAVAILABLE`. */
  readonly codeName: string;
  /** The endpoint that answered (or failed). */
  readonly endpoint?: string;
  constructor(message: string, code: number, opts: { cause?: unknown; endpoint?: string } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'EtcdV3Error';
    this.code = code;
    this.codeName = Status[code] ?? String(code);
    this.endpoint = opts.endpoint;
  }
}

/** The requested revision is older than the compacted one: relist and watch again. */
export class EtcdCompactedError extends EtcdV3Error {
  constructor(readonly compactRevision: number, endpoint?: string) {
    super(`etcd: required revision has been compacted (compact revision ${compactRevision})`, Status.OUT_OF_RANGE, { endpoint });
    this.name = 'EtcdCompactedError';
  }
}

/** The lease does not exist (expired or revoked). */
export class EtcdLeaseNotFoundError extends EtcdV3Error {
  constructor(message: string, endpoint?: string) {
    super(message, Status.NOT_FOUND, { endpoint });
    this.name = 'EtcdLeaseNotFoundError';
  }
}

/** Authentication failed or the user may not do this. */
export class EtcdAuthError extends EtcdV3Error {
  constructor(message: string, code: number, endpoint?: string) {
    super(message, code, { endpoint });
    this.name = 'EtcdAuthError';
  }
}

/** A bad argument, rejected before any request. */
export class EtcdArgumentError extends TypeError {
  constructor(readonly option: string, message: string) {
    super(`${option}: ${message}`);
    this.name = 'EtcdArgumentError';
  }
}

const COMPACTED = /required revision has been compacted/;
const LEASE_NOT_FOUND = /requested lease not found/;

export function fromGrpcError(err: { code: number; details?: string; message: string }, endpoint: string): EtcdV3Error {
  const msg = err.details || err.message;
  if (COMPACTED.test(msg)) return new EtcdCompactedError(0, endpoint);
  if (LEASE_NOT_FOUND.test(msg)) return new EtcdLeaseNotFoundError(msg, endpoint);
  if (err.code === Status.UNAUTHENTICATED || err.code === Status.PERMISSION_DENIED || err.code === Status.FAILED_PRECONDITION && /auth/.test(msg)) {
    return new EtcdAuthError(msg, err.code, endpoint);
  }
  return new EtcdV3Error(msg, err.code, { cause: err, endpoint });
}
