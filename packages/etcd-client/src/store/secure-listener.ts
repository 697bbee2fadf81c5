// The Store's TCP listener for nodes and users. TLS always; a client certificate is requested
// but not required, so users may come with a bearer token instead. A certificate that is
// presented must chain to the cluster CA: the Authenticator verifies it (signature, validity),
// because the handshake here does not reject unverified certificates by itself.
import * as fs from 'node:fs';
import { Server, type ServerCredentials, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { FileWatcherCertificateProvider, createCertificateProviderServerCredentials } from '@grpc/grpc-js/build/src/experimental';
import { HealthImplementation } from 'grpc-health-check';
import { store } from '@berth/api';

export interface SecureListenerOptions {
  listen: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  implementation: UntypedServiceImplementation;
}

export interface SecureListener {
  address: string;
  setServing(serving: boolean): void;
  shutdown(graceMs?: number): Promise<void>;
}

export async function startSecureListener(o: SecureListenerOptions): Promise<SecureListener> {
  for (const [flag, f] of [['client-ca-file', o.caFile], ['tls-cert-file', o.certFile], ['tls-private-key-file', o.keyFile]]) {
    if (!fs.existsSync(f)) throw new Error(`--${flag}: ${f} does not exist`);
  }
  // Certificates are re-read every minute, so rotated files take effect without a restart.
  const provider = new FileWatcherCertificateProvider({ caCertificateFile: o.caFile, certificateFile: o.certFile, privateKeyFile: o.keyFile, refreshIntervalMs: 60_000 });
  const creds: ServerCredentials = createCertificateProviderServerCredentials(provider, provider, false);
  const server = new Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  const health = new HealthImplementation({ '': 'NOT_SERVING', 'berth.store.v1.Store': 'NOT_SERVING' });
  health.addToServer(server);
  server.addService(store.StoreService, o.implementation);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(o.listen, creds, (err, p) => (err ? reject(err) : resolve(p))));
  const host = o.listen.slice(0, o.listen.lastIndexOf(':'));
  return {
    address: `${host}:${port}`,
    setServing: (s) => { health.setStatus('', s ? 'SERVING' : 'NOT_SERVING'); health.setStatus('berth.store.v1.Store', s ? 'SERVING' : 'NOT_SERVING'); },
    shutdown: (graceMs = 1000) => new Promise<void>((resolve) => {
      const t = setTimeout(() => { server.forceShutdown(); resolve(); }, graceMs);
      server.tryShutdown(() => { clearTimeout(t); resolve(); });
    }),
  };
}
