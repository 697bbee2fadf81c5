// One client factory: unix socket or TLS/mTLS TCP, a default deadline on every call, and retries
// only for the methods the caller names as idempotent (through gRPC's service-config retry policy,
// so a write that may have been applied is never replayed).
import * as fs from 'node:fs';
import {
  credentials,
  type ChannelCredentials,
  type Client,
  type ChannelOptions,
  type Interceptor,
  InterceptingCall,
  Metadata,
} from '@grpc/grpc-js';
import { parseListen } from './listen';

export interface ClientTls {
  caFile: string;
  /** Client certificate for mutual TLS. */
  certFile?: string;
  keyFile?: string;
  /** Override the name checked against the server certificate. */
  serverName?: string;
}

export interface ClientOptions {
  /** `unix:///path` or `host:port`. */
  target: string;
  tls?: ClientTls;
  /** Plain TCP to a loopback address (tests and benchmarks only). */
  insecureLoopback?: boolean;
  /** Deadline applied to calls that set none. Streams are exempt. Default 30 s. */
  defaultDeadlineMs?: number;
  /** Fully qualified service name used in the retry policy, e.g. `berth.store.v1.Store`. */
  serviceName?: string;
  /** Methods that are safe to retry on UNAVAILABLE (reads, idempotent deletes...). */
  idempotentMethods?: string[];
  /** Bearer token sent as `authorization: Bearer <token>` on every call. */
  bearerToken?: string;
  channelOptions?: ChannelOptions;
}

type ClientCtor<T extends Client> = new (address: string, creds: ChannelCredentials, options?: ChannelOptions) => T;

export function createClient<T extends Client>(Ctor: ClientCtor<T>, opts: ClientOptions): T {
  const addr = parseListen(opts.target, 'target');
  let creds: ChannelCredentials;
  if (opts.tls) {
    creds = credentials.createSsl(
      fs.readFileSync(opts.tls.caFile),
      opts.tls.keyFile ? fs.readFileSync(opts.tls.keyFile) : null,
      opts.tls.certFile ? fs.readFileSync(opts.tls.certFile) : null,
    );
  } else {
    if (addr.kind === 'tcp' && !opts.insecureLoopback) throw new Error(`target ${opts.target}: TCP needs TLS (tls.caFile)`);
    creds = credentials.createInsecure();
  }
  if (opts.bearerToken) {
    const token = opts.bearerToken;
    const callCreds = credentials.createFromMetadataGenerator((_p, cb) => {
      const md = new Metadata();
      md.set('authorization', `Bearer ${token}`);
      cb(null, md);
    });
    if (opts.tls) creds = credentials.combineChannelCredentials(creds, callCreds);
  }
  const channelOptions: ChannelOptions = {
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.keepalive_time_ms': 30_000,
    ...(opts.tls?.serverName ? { 'grpc.ssl_target_name_override': opts.tls.serverName, 'grpc.default_authority': opts.tls.serverName } : {}),
    ...opts.channelOptions,
  };
  if (opts.idempotentMethods?.length && opts.serviceName) {
    channelOptions['grpc.service_config'] = JSON.stringify({
      methodConfig: [{
        name: opts.idempotentMethods.map((method) => ({ service: opts.serviceName, method })),
        retryPolicy: { maxAttempts: 4, initialBackoff: '0.05s', maxBackoff: '1s', backoffMultiplier: 2, retryableStatusCodes: ['UNAVAILABLE'] },
      }],
    });
  } else {
    channelOptions['grpc.enable_retries'] = 0;
  }
  const deadlineMs = opts.defaultDeadlineMs ?? 30_000;
  const deadline: Interceptor = (options, next) => {
    if (options.deadline === undefined && !options.method_definition.responseStream && !options.method_definition.requestStream) {
      options = { ...options, deadline: Date.now() + deadlineMs };
    }
    return new InterceptingCall(next(options));
  };
  channelOptions.interceptors = [deadline, ...((opts.channelOptions?.interceptors as Interceptor[]) ?? [])];
  return new Ctor(addr.target, creds, channelOptions);
}

/** Promisifies a unary client method: `await call(client, 'get', req)`. */
export function callUnary<Req, Res>(
  fn: (req: Req, cb: (err: Error | null, res: Res) => void) => unknown,
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, (err, res) => (err ? reject(err) : resolve(res))));
}
