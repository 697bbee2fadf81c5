// Parsing of `--listen` addresses: `unix:///abs/path` (or a bare absolute path) and `host:port`.
import { InvalidArgumentError } from './errors';

export type ListenAddress =
  | { kind: 'unix'; path: string; target: string }
  | { kind: 'tcp'; host: string; port: number; target: string };

export function parseListen(value: string, field = 'listen'): ListenAddress {
  if (value.startsWith('unix://') || value.startsWith('/')) {
    const p = value.startsWith('unix://') ? value.slice('unix://'.length) : value;
    if (!p.startsWith('/')) throw new InvalidArgumentError(field, `unix socket path must be absolute, got "${value}"`);
    if (Buffer.byteLength(p) > 107) throw new InvalidArgumentError(field, `unix socket path is longer than 107 bytes: "${p}"`);
    return { kind: 'unix', path: p, target: `unix://${p}` };
  }
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!m) throw new InvalidArgumentError(field, `expected unix:///path or host:port, got "${value}"`);
  const port = Number(m[2]);
  if (port > 65535) throw new InvalidArgumentError(field, `port out of range: ${port}`);
  const host = m[1].startsWith('[') ? m[1].slice(1, -1) : m[1];
  return { kind: 'tcp', host, port, target: `${m[1]}:${port}` };
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
