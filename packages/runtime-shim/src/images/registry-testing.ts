// A real OCI registry on loopback for tests and benchmarks: Debian's docker-registry with a temp
// config and storage, optionally behind htpasswd (basic) or token auth (a token service in this
// process signing RS256 JWTs with a throwaway self-signed certificate), plus skopeo to push.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createSign, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface TestRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  user: string;
  password: string;
  /** Requests the token service has answered. */
  tokenRequests: number;
  /** Refresh token the token service accepts (token auth). */
  identityToken: string;
  /** Token service URL (token auth). */
  realm?: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url');
}

export async function startRegistry(opts: { auth?: 'none' | 'basic' | 'token'; tls?: boolean } = {}): Promise<TestRegistry> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-registry-'));
  const port = await freePort();
  const user = 'berth';
  const password = randomBytes(8).toString('hex');
  let tokenServer: http.Server | undefined;
  let proc: ChildProcess | undefined;
  const reg: TestRegistry = {
    host: `127.0.0.1:${port}`,
    user,
    password,
    tokenRequests: 0,
    identityToken: randomBytes(12).toString('hex'),
    stop: async () => {
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc!.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await exited; }
      }
      if (tokenServer) await new Promise((r) => tokenServer!.close(r));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    let auth = '';
    if (opts.auth === 'basic') {
      execFileSync('htpasswd', ['-Bbc', path.join(dir, 'htpasswd'), user, password], { stdio: 'ignore' });
      auth = `auth:\n  htpasswd:\n    realm: berth-test\n    path: ${path.join(dir, 'htpasswd')}\n`;
    } else if (opts.auth === 'token') {
      const key = path.join(dir, 'key.pem');
      const cert = path.join(dir, 'cert.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=berth-test-token'], { stdio: 'ignore' });
      const der = execFileSync('openssl', ['x509', '-in', cert, '-outform', 'DER']);
      const keyPem = fs.readFileSync(key);
      tokenServer = http.createServer((req, res) => {
        reg.tokenRequests++;
        let body = '';
        req.on('data', (d: Buffer) => { body += d.toString(); });
        req.on('end', () => {
        const u = new URL(req.url ?? '/', 'http://x');
        // OAuth2 refresh-token grant (identity tokens) as a form POST; else GET with Basic auth.
        if (req.method === 'POST') for (const [k, v] of new URLSearchParams(body)) u.searchParams.append(k, v);
        const hdr = req.headers.authorization ?? '';
        const [u0, p0] = hdr.startsWith('Basic ') ? Buffer.from(hdr.slice(6), 'base64').toString().split(':') : [];
        const refreshOk = req.method === 'POST' && u.searchParams.get('grant_type') === 'refresh_token' && u.searchParams.get('refresh_token') === reg.identityToken;
        if (!refreshOk && (u0 !== user || p0 !== password)) { res.statusCode = 401; res.end('{"details":"bad credentials"}'); return; }
        const access = u.searchParams.getAll('scope').map((s) => { const [type, name, actions] = s.split(':'); return { type, name, actions: actions.split(',') }; });
        const now = Math.floor(Date.now() / 1000);
        const head = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', x5c: [der.toString('base64')] }));
        const claims = b64url(JSON.stringify({ iss: 'berth-test-issuer', sub: user, aud: u.searchParams.get('service'), exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access }));
        const sig = createSign('RSA-SHA256').update(`${head}.${claims}`).sign(keyPem);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(refreshOk ? { access_token: `${head}.${claims}.${b64url(sig)}`, expires_in: 300 } : { token: `${head}.${claims}.${b64url(sig)}`, expires_in: 300 }));
        });
      });
      await new Promise<void>((r) => tokenServer!.listen(0, '127.0.0.1', r));
      const tport = (tokenServer.address() as net.AddressInfo).port;
      reg.realm = `http://127.0.0.1:${tport}/token`;
      auth = `auth:\n  token:\n    realm: http://127.0.0.1:${tport}/token\n    service: berth-test-registry\n    issuer: berth-test-issuer\n    rootcertbundle: ${cert}\n`;
    }
    let tls = '';
    if (opts.tls) {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'tls.key'), '-out', path.join(dir, 'tls.crt'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
      tls = `  tls:\n    certificate: ${path.join(dir, 'tls.crt')}\n    key: ${path.join(dir, 'tls.key')}\n`;
    }
    const config = `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(dir, 'data')}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n  secret: ${randomBytes(16).toString('hex')}\n${tls}${auth}`;
    fs.writeFileSync(path.join(dir, 'config.yml'), config);
    proc = spawn('docker-registry', ['serve', path.join(dir, 'config.yml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    proc.stderr?.on('data', (d: Buffer) => { log = (log + d.toString()).slice(-4000); });
    const deadline = Date.now() + 15_000;
    for (;;) {
      const st = await new Promise<number>((resolve) => {
        const get = opts.tls ? https.get : http.get;
        get(`${opts.tls ? 'https' : 'http'}://${reg.host}/v2/`, { rejectUnauthorized: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).on('error', () => resolve(0));
      });
      if (st === 200 || st === 401) break;
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`docker-registry did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return reg;
  } catch (err) {
    await reg.stop();
    throw err;
  }
}

/** skopeo copy of an OCI layout into the registry (async: the token service runs in this process). */
export function skopeoPush(layout: string, tag: string, registry: TestRegistry, repo: string, opts: { creds?: boolean; all?: boolean; format?: 'oci' | 'v2s2' } = {}): Promise<void> {
  const args = ['--insecure-policy', 'copy', '-q', '--dest-tls-verify=false'];
  if (opts.format) args.push('--format', opts.format);
  if (opts.all) args.push('--all');
  if (opts.creds) args.push('--dest-creds', `${registry.user}:${registry.password}`);
  args.push(`oci:${layout}:${tag}`, `docker://${registry.host}/${repo}`);
  return new Promise((resolve, reject) => {
    execFile('skopeo', args, { timeout: 60_000 }, (err, _out, stderr) => (err ? reject(new Error(`skopeo ${args.join(' ')}: ${stderr || err.message}`)) : resolve()));
  });
}
