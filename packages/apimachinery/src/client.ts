// The typed Store client every component shares (scheduler, kubelet-agent, cli): promise
// methods over berth.store.v1.Store, domain errors instead of raw gRPC status, watches as
// async iterables.
import { core, store } from '@berth/api';
import { callUnary, createClient, fromServiceError, z, type ClientOptions, type OptionSpec } from '@berth/common';
import type { ClientReadableStream } from '@grpc/grpc-js';
import { unwrap } from './kinds';

export type StoreClientOptions = Omit<ClientOptions, 'serviceName' | 'idempotentMethods'>;

export class StoreClient {
  readonly raw: store.StoreClient;
  constructor(opts: StoreClientOptions) {
    this.raw = createClient(store.StoreClient, { ...opts, serviceName: 'berth.store.v1.Store', idempotentMethods: ['Get', 'List', 'CanI', 'WhoAmI'] });
  }

  private async call<Req, Res>(fn: (req: Req, cb: (err: Error | null, res: Res) => void) => unknown, req: Req): Promise<Res> {
    try {
      return await callUnary(fn.bind(this.raw) as typeof fn, req);
    } catch (e) {
      throw fromServiceError(e);
    }
  }

  create(object: core.Object, o: { dryRun?: boolean; fieldManager?: string } = {}): Promise<core.Object> {
    return this.call(this.raw.create, store.CreateRequest.fromPartial({ object, dryRun: o.dryRun, fieldManager: o.fieldManager }));
  }
  get(resource: string, namespace: string, name: string): Promise<core.Object> {
    return this.call(this.raw.get, store.GetRequest.fromPartial({ resource, namespace, name }));
  }
  list(req: Partial<store.ListRequest> & { resource: string }): Promise<store.ListResponse> {
    return this.call(this.raw.list, store.ListRequest.fromPartial(req));
  }
  /** Every page of a collection, read at one resourceVersion. */
  async listAll(req: Partial<store.ListRequest> & { resource: string }, pageSize = 500): Promise<store.ListResponse> {
    const items: core.Object[] = [];
    let cont = '';
    let rv = '';
    do {
      const r = await this.list({ ...req, limit: pageSize, continue: cont });
      items.push(...r.items);
      cont = r.continue;
      rv ||= r.resourceVersion;
    } while (cont);
    return { items, resourceVersion: rv, continue: '', remainingItemCount: undefined };
  }
  update(object: core.Object, o: { dryRun?: boolean } = {}): Promise<core.Object> {
    return this.call(this.raw.update, store.UpdateRequest.fromPartial({ object, dryRun: o.dryRun }));
  }
  /** `subresource` "approval": a certificate request's Approved/Denied conditions. */
  updateStatus(object: core.Object, o: { dryRun?: boolean; subresource?: 'status' | 'approval' } = {}): Promise<core.Object> {
    return this.call(this.raw.updateStatus, store.UpdateStatusRequest.fromPartial({ object, dryRun: o.dryRun, subresource: o.subresource }));
  }
  delete(req: Partial<store.DeleteRequest> & { resource: string; name: string }): Promise<core.Object> {
    return this.call(this.raw.delete, store.DeleteRequest.fromPartial(req));
  }
  bind(req: Partial<store.BindRequest> & { name: string; nodeName: string }): Promise<core.Object> {
    return this.call(this.raw.bind, store.BindRequest.fromPartial(req));
  }
  canI(req: Partial<store.CanIRequest> & { verb: string }): Promise<store.CanIResponse> {
    return this.call(this.raw.canI, store.CanIRequest.fromPartial(req));
  }
  whoAmI(): Promise<store.WhoAmIResponse> {
    return this.call(this.raw.whoAmI, {});
  }

  /** Streams watch events until the server ends the stream or `signal` aborts. */
  async *watch(req: Partial<store.WatchRequest> & { resource: string }, signal?: AbortSignal): AsyncGenerator<store.WatchEvent> {
    const stream: ClientReadableStream<store.WatchEvent> = this.raw.watch(store.WatchRequest.fromPartial(req));
    const onAbort = () => stream.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const ev of stream as AsyncIterable<store.WatchEvent>) yield ev;
    } catch (e) {
      if (signal?.aborted) return;
      throw fromServiceError(e);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      stream.cancel();
    }
  }

  close(): void {
    this.raw.close();
  }
}

/** `namespace/name` (or `name` for cluster-scoped objects): the key of an informer's cache. */
export function objectKey(obj: core.Object): string {
  const m = unwrap(obj).value.metadata!;
  return m.namespace ? `${m.namespace}/${m.name}` : m.name;
}

/**
 * The flags every Store consumer takes (scheduler, kubelet-agent): one definition, so each
 * binary names and validates them the same way, and one way to connect with them.
 */
export const storeClientOptions = {
  store: { flag: 'store', type: 'string', env: 'BERTH_STORE', description: 'Store API address (unix:///path or host:port); without it nothing is watched' },
  storeCa: { flag: 'store-ca', type: 'string', description: "CA of the Store's TLS certificate (TCP)" },
  storeCert: { flag: 'store-cert', type: 'string', description: 'client certificate for the Store (TCP, mutual TLS; with --store-key)' },
  storeKey: { flag: 'store-key', type: 'string', description: 'client key for the Store (TCP, mutual TLS; with --store-cert)' },
} satisfies Record<string, OptionSpec>;

export const storeClientSchema = {
  store: z.string().regex(/^(unix:\/\/\/.+|[^\s/]+:\d+)$/, { message: 'expected unix:///absolute/path or host:port' }).optional(),
  storeCa: z.string().optional(),
  storeCert: z.string().optional(),
  storeKey: z.string().optional(),
};

export interface StoreClientConfig { store?: string; storeCa?: string; storeCert?: string; storeKey?: string }

/** A StoreClient for `--store` and its TLS files, or undefined when no Store is configured. */
export function storeClientFromConfig(c: StoreClientConfig): StoreClient | undefined {
  if (!c.store) return undefined;
  if (!c.storeCert !== !c.storeKey) throw new RangeError('store-cert and store-key must be given together');
  const tls = c.storeCa ? { caFile: c.storeCa, certFile: c.storeCert, keyFile: c.storeKey } : undefined;
  return new StoreClient({ target: c.store, tls });
}
