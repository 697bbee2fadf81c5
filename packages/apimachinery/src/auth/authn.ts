// Authentication's pure parts: the static token file, bootstrap tokens and the mapping of a
// client certificate's subject to a user (CN = user name, O = groups), as in Kubernetes.
import { SYSTEM_AUTHENTICATED, SYSTEM_BOOTSTRAPPERS, type UserInfo } from './types';

export class TokenFileError extends Error {
  constructor(file: string, line: number, reason: string) {
    super(`${file}:${line}: ${reason}`);
    this.name = 'TokenFileError';
  }
}

/** Splits one CSV line, honouring double quotes ("a,b" stays one field). */
function csv(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let q = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (q) {
      if (ch === '"' && line[i + 1] === '"') { cur += '"'; i++; } else if (ch === '"') q = false; else cur += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') { out.push(cur); cur = ''; } else cur += ch;
  }
  out.push(cur);
  return out.map((s) => s.trim());
}

/**
 * Parses a static token file: `token,user,uid[,"group1,group2"]` per line (Kubernetes'
 * --token-auth-file format); blank lines and `#` comments are skipped.
 */
export function parseTokenFile(text: string, file = 'token file'): Map<string, UserInfo> {
  const out = new Map<string, UserInfo>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const f = csv(line);
    if (f.length < 3) throw new TokenFileError(file, i + 1, 'expected token,user,uid[,"group1,group2"]');
    const [token, name, uid, groups = ''] = f;
    if (!token) throw new TokenFileError(file, i + 1, 'empty token');
    if (!name) throw new TokenFileError(file, i + 1, 'empty user name');
    if (out.has(token)) throw new TokenFileError(file, i + 1, 'duplicate token');
    out.set(token, { name, uid, groups: withAuthenticated(groups.split(',').map((g) => g.trim()).filter(Boolean)), authenticator: 'token' });
  });
  return out;
}

export const BOOTSTRAP_TOKEN_RE = /^([a-z0-9]{6})\.([a-z0-9]{16})$/;

/** Splits a bootstrap token `abcdef.0123456789abcdef` into id and secret. */
export function parseBootstrapToken(token: string): { id: string; secret: string } | undefined {
  const m = BOOTSTRAP_TOKEN_RE.exec(token);
  return m ? { id: m[1], secret: m[2] } : undefined;
}

/** The user a valid bootstrap token authenticates as. */
export function bootstrapUser(id: string, extraGroups: string[] = []): UserInfo {
  return { name: `system:bootstrap:${id}`, groups: withAuthenticated([SYSTEM_BOOTSTRAPPERS, ...extraGroups]), authenticator: 'bootstrap-token' };
}

/** Parses an RFC 2253-ish subject as Node prints it ("CN=alice\nO=dev\nO=ops") into a user. */
export function userFromCertSubject(subject: { CN?: string | string[]; O?: string | string[] }): UserInfo | undefined {
  const cn = Array.isArray(subject.CN) ? subject.CN[0] : subject.CN;
  if (!cn) return undefined;
  const orgs = subject.O === undefined ? [] : Array.isArray(subject.O) ? subject.O : [subject.O];
  return { name: cn, groups: withAuthenticated(orgs), authenticator: 'x509' };
}

export function withAuthenticated(groups: string[]): string[] {
  return groups.includes(SYSTEM_AUTHENTICATED) ? groups : [...groups, SYSTEM_AUTHENTICATED];
}
