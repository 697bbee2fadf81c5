import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import {
  AlreadyExistsError, ConflictError, FailedPreconditionError, InvalidArgumentError, NotFoundError, PermissionDeniedError,
  UnauthenticatedError, UnavailableError, UnimplementedError, fromServiceError, toServiceError, BerthError,
} from './errors';

describe('error mapping', () => {
  it.each([
    [new NotFoundError('pod "a" not found'), status.NOT_FOUND],
    [new AlreadyExistsError('exists'), status.ALREADY_EXISTS],
    [new ConflictError('stale resourceVersion'), status.ABORTED],
    [new FailedPreconditionError('not ready'), status.FAILED_PRECONDITION],
    [new InvalidArgumentError('spec.containers[0].image', 'required'), status.INVALID_ARGUMENT],
    [new PermissionDeniedError('no'), status.PERMISSION_DENIED],
    [new UnauthenticatedError('who'), status.UNAUTHENTICATED],
    [new UnavailableError('etcd down'), status.UNAVAILABLE],
    [new UnimplementedError('later'), status.UNIMPLEMENTED],
    [new Error('boom'), status.INTERNAL],
  ])('%s maps to code %i', (err, code) => {
    expect(toServiceError(err).code).toBe(code);
  });

  it('carries the field path both in the message and in metadata, and back', () => {
    const se = toServiceError(new InvalidArgumentError('spec.containers[0].resources.limits.cpu', 'invalid quantity'));
    expect(se.details).toBe('spec.containers[0].resources.limits.cpu: invalid quantity');
    const back = fromServiceError(Object.assign(new Error(se.details), se)) as BerthError;
    expect(back).toBeInstanceOf(BerthError);
    expect(back.kind).toBe('InvalidArgument');
    expect(back.field).toBe('spec.containers[0].resources.limits.cpu');
    expect(back.message).toBe('spec.containers[0].resources.limits.cpu: invalid quantity');
  });
});
