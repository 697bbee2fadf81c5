// Store errors arrive as BerthError of a kind (mapped back from gRPC status), not as the
// subclasses: test the kind.
import { BerthError, type ErrorKind } from '@berth/common';

export function isKind(err: unknown, kind: ErrorKind): boolean {
  return err instanceof BerthError && err.kind === kind;
}
