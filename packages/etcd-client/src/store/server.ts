// The gRPC façade of berth.store.v1.Store: authenticate, hand the request to the Registry,
// and let `unary`/`serverStream` map domain errors to status codes (the one boundary).
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { core, store } from '@berth/api';
import { InvalidArgumentError, serverStream, unary } from '@berth/common';
import { Authenticator, type CallIdentity } from './authn';
import type { Registry } from './registry';

function need(o: core.Object | undefined): core.Object {
  if (!o) throw new InvalidArgumentError('object', 'Required value');
  return o;
}

export function storeImplementation(registry: Registry, authn: Authenticator, o: { localAdmin: boolean }): UntypedServiceImplementation {
  const who = (call: unknown) => authn.authenticate(call as CallIdentity, o.localAdmin);
  return {
    create: unary<store.CreateRequest, core.Object>(async (req, call) => registry.create(need(req.object), await who(call), { dryRun: req.dryRun })),
    get: unary<store.GetRequest, core.Object>(async (req, call) => registry.get(req, await who(call))),
    list: unary<store.ListRequest, store.ListResponse>(async (req, call) => registry.list(req, await who(call))),
    update: unary<store.UpdateRequest, core.Object>(async (req, call) => registry.update(need(req.object), await who(call), { dryRun: req.dryRun })),
    updateStatus: unary<store.UpdateStatusRequest, core.Object>(async (req, call) => registry.updateStatus(need(req.object), await who(call), { dryRun: req.dryRun, subresource: req.subresource })),
    delete: unary<store.DeleteRequest, core.Object>(async (req, call) => registry.delete(req, await who(call))),
    bind: unary<store.BindRequest, core.Object>(async (req, call) => registry.bind(req, await who(call))),
    canI: unary<store.CanIRequest, store.CanIResponse>(async (req, call) => registry.canI(await who(call), req)),
    whoAmI: unary<store.WhoAmIRequest, store.WhoAmIResponse>(async (_req, call) => {
      const u = await who(call);
      return { username: u.name, uid: u.uid ?? '', groups: u.groups, authenticator: u.authenticator };
    }),
    watch: serverStream<store.WatchRequest, store.WatchEvent>(async function* (req, call, signal) {
      yield* registry.watch(req, await who(call), signal);
    }),
  };
}
