// Domain errors and the one mapping from them to gRPC status codes. Services throw these (or
// plain errors) inside domain code; the gRPC boundary (handlers built with `unary`/`serverStream`
// in serve.ts) converts them with `toServiceError` and nowhere else.
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';

export type ErrorKind =
  | 'NotFound'
  | 'AlreadyExists'
  | 'Conflict'
  | 'FailedPrecondition'
  | 'InvalidArgument'
  | 'PermissionDenied'
  | 'Unauthenticated'
  | 'Unavailable'
  | 'Unimplemented'
  | 'DeadlineExceeded'
  | 'ResourceExhausted'
  | 'Internal';

const codeOf: Record<ErrorKind, status> = {
  NotFound: status.NOT_FOUND,
  AlreadyExists: status.ALREADY_EXISTS,
  Conflict: status.ABORTED,
  FailedPrecondition: status.FAILED_PRECONDITION,
  InvalidArgument: status.INVALID_ARGUMENT,
  PermissionDenied: status.PERMISSION_DENIED,
  Unauthenticated: status.UNAUTHENTICATED,
  Unavailable: status.UNAVAILABLE,
  Unimplemented: status.UNIMPLEMENTED,
  DeadlineExceeded: status.DEADLINE_EXCEEDED,
  ResourceExhausted: status.RESOURCE_EXHAUSTED,
  Internal: status.INTERNAL,
};

const kindOf = new Map<number, ErrorKind>(Object.entries(codeOf).map(([k, v]) => [v, k as ErrorKind]));

/** Base class of every Berth domain error. `field` is a path like `spec.containers[0].image`. */
export class BerthError extends Error {
  readonly kind: ErrorKind;
  readonly field?: string;
  constructor(kind: ErrorKind, message: string, opts: { field?: string; cause?: unknown } = {}) {
    super(opts.field ? `${opts.field}: ${message}` : message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = `${kind}Error`;
    this.kind = kind;
    this.field = opts.field;
  }
  get grpcCode(): status {
    return codeOf[this.kind];
  }
}

export class NotFoundError extends BerthError {
  constructor(message: string, opts?: { cause?: unknown }) { super('NotFound', message, opts); }
}
export class AlreadyExistsError extends BerthError {
  constructor(message: string, opts?: { cause?: unknown }) { super('AlreadyExists', message, opts); }
}
/** An optimistic-concurrency conflict (stale resourceVersion): gRPC ABORTED, the caller re-reads. */
export class ConflictError extends BerthError {
  constructor(message: string, opts?: { cause?: unknown }) { super('Conflict', message, opts); }
}
export class FailedPreconditionError extends BerthError {
  constructor(message: string, opts?: { field?: string; cause?: unknown }) { super('FailedPrecondition', message, opts); }
}
/** Bad input; `field` names the offending path and is carried to the client in metadata too. */
export class InvalidArgumentError extends BerthError {
  constructor(field: string | undefined, message: string, opts?: { cause?: unknown }) { super('InvalidArgument', message, { ...opts, field }); }
}
export class PermissionDeniedError extends BerthError {
  constructor(message: string) { super('PermissionDenied', message); }
}
export class UnauthenticatedError extends BerthError {
  constructor(message: string) { super('Unauthenticated', message); }
}
/** A retryable fault (dependency down, leader lost): gRPC UNAVAILABLE. */
export class UnavailableError extends BerthError {
  constructor(message: string, opts?: { cause?: unknown }) { super('Unavailable', message, opts); }
}
export class UnimplementedError extends BerthError {
  constructor(message: string) { super('Unimplemented', message); }
}

const FIELD_KEY = 'berth-field';

/** Converts any thrown value into a grpc-js ServiceError. Unknown errors become INTERNAL. */
export function toServiceError(err: unknown): Partial<ServiceError> & { code: status; details: string } {
  if (err instanceof BerthError) {
    const metadata = new Metadata();
    if (err.field) metadata.set(FIELD_KEY, err.field);
    return { code: err.grpcCode, details: err.message, metadata };
  }
  if (isServiceError(err)) return { code: err.code, details: err.details, metadata: err.metadata };
  const message = err instanceof Error ? err.message : String(err);
  return { code: status.INTERNAL, details: message };
}

export function isServiceError(err: unknown): err is ServiceError {
  return typeof err === 'object' && err !== null && typeof (err as ServiceError).code === 'number' && 'details' in err;
}

/** Converts a gRPC error seen by a client back into the domain error of the same kind. */
export function fromServiceError(err: unknown): BerthError | unknown {
  if (!isServiceError(err)) return err;
  const kind = kindOf.get(err.code) ?? 'Internal';
  const field = err.metadata?.get(FIELD_KEY)[0]?.toString();
  const msg = field && err.details.startsWith(`${field}: `) ? err.details.slice(field.length + 2) : err.details;
  return new BerthError(kind, msg, { field, cause: err });
}
