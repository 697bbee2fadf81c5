// IpamStore: pod addresses from one node CIDR, persisted on disk crash-safely.
//
// One file per allocated address (`<dir>/<ip>`, content: the sandbox id), claimed with
// O_CREAT|O_EXCL: the kernel makes the claim atomic, so neither a concurrent process nor a
// restart after kill -9 can hand the same address out twice. A claim whose owner was never
// written (a crash between create and write) has an empty owner and is released by gc().
// Within this process calls are serialised, so the in-memory index always matches the files.
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import * as path from 'node:path';
import { InvalidArgumentError, BerthError } from '@berth/common';
import { ipBytes, ipString, parseIpCidr } from '@berth/native';

export interface IpamOptions {
  /** The node's pod CIDR, e.g. 10.88.0.0/24 or fd00:10:88::/64. */
  cidr: string;
  /** Config key the CIDR came from, for error messages (default podCidr). */
  field?: string;
  /** Gateway address (default: the first host address). Never allocated. */
  gateway?: string;
  /** Further addresses never handed out. */
  reserved?: string[];
}

// Addresses as bigints, so IPv4 and IPv6 ranges share one allocator.
function toBig(ip: string): bigint {
  return BigInt(`0x${ipBytes(ip).bytes.toString('hex')}`);
}
function fromBig(n: bigint, v6: boolean): string {
  return ipString(Buffer.from(n.toString(16).padStart(v6 ? 32 : 8, '0'), 'hex'));
}

export class IpamStore {
  readonly network: bigint;
  readonly prefix: number;
  readonly gateway: string;
  readonly family: 4 | 6;
  private readonly first: bigint;
  private readonly last: bigint;
  private readonly reserved: Set<bigint>;
  /** ip -> sandbox id; guarded by `lock`. */
  private readonly owners = new Map<string, string>();
  private lock: Promise<unknown> = Promise.resolve();
  private cursor: bigint;

  constructor(readonly dir: string, opts: IpamOptions) {
    const field = opts.field ?? 'podCidr';
    let cidr: { ip: string; prefix: number; family: number };
    try {
      cidr = parseIpCidr(opts.cidr, field);
    } catch (err) {
      throw new InvalidArgumentError(field, `expected an IPv4 CIDR like 10.88.0.0/16 or an IPv6 one like fd00:88::/64, got '${opts.cidr}'`, { cause: err });
    }
    this.family = cidr.family === 10 ? 6 : 4;
    const bits = this.family === 6 ? 128 : 32;
    if (cidr.prefix > bits - 2) throw new InvalidArgumentError(field, `${opts.cidr} is too small for pods (at most /${bits - 2})`);
    const all = (1n << BigInt(bits)) - 1n;
    const host = (1n << BigInt(bits - cidr.prefix)) - 1n;
    this.network = toBig(cidr.ip) & (all ^ host);
    this.prefix = cidr.prefix;
    this.first = this.network + 1n;
    // IPv4 keeps the broadcast address out; IPv6 has none, but the last one stays free too.
    this.last = (this.network | host) - 1n;
    this.gateway = opts.gateway ?? fromBig(this.first, this.family === 6);
    if (!this.contains(this.gateway)) throw new InvalidArgumentError('gateway', `${this.gateway} is not inside ${this.cidr}`);
    this.reserved = new Set([toBig(this.gateway), ...(opts.reserved ?? []).map((r) => toBig(r))]);
    this.cursor = this.first - 1n;
  }

  /** Reads the allocations on disk (creating the directory). Call once before use. */
  load(): this {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.owners.clear();
    for (const name of fs.readdirSync(this.dir)) {
      if (isIP(name) !== this.family) continue;
      this.owners.set(name, fs.readFileSync(path.join(this.dir, name), 'utf8'));
    }
    // Round-robin resumes after the highest address in use (the cursor itself is not persisted:
    // rewriting a file on every allocation would cost an ext4 flush).
    for (const ip of this.owners.keys()) {
      const n = toBig(ip);
      if (n > this.cursor) this.cursor = n;
    }
    return this;
  }

  get cidr(): string {
    return `${fromBig(this.network, this.family === 6)}/${this.prefix}`;
  }

  contains(ip: string): boolean {
    if (isIP(ip) !== this.family) return false;
    const bits = this.family === 6 ? 128 : 32;
    const host = (1n << BigInt(bits - this.prefix)) - 1n;
    return (toBig(ip) & ~host) === this.network;
  }

  private serial<T>(fn: () => T): Promise<T> {
    const p = this.lock.then(fn, fn);
    this.lock = p.catch(() => undefined);
    return p;
  }

  /** The address of `owner`, allocating one if it has none. Round-robin, so a released address is reused last. */
  allocate(owner: string): Promise<string> {
    return this.serial(() => {
      for (const [ip, o] of this.owners) if (o === owner) return ip;
      const size = this.last - this.first + 1n;
      // Every address visited and skipped is a known one (taken or reserved; a claim found taken
      // on disk is added as it is met), so one more than those is enough: a huge IPv6 range is
      // never walked in full, and a full range is detected.
      for (let i = 1n; i <= size && i <= BigInt(this.owners.size + this.reserved.size + 1); i++) {
        const n = this.first + ((((this.cursor - this.first + i) % size) + size) % size);
        if (this.reserved.has(n)) continue;
        const ip = fromBig(n, this.family === 6);
        if (this.owners.has(ip)) continue;
        let fd: number;
        try {
          fd = fs.openSync(path.join(this.dir, ip), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
            // Claimed by another process sharing the directory.
            this.owners.set(ip, fs.readFileSync(path.join(this.dir, ip), 'utf8'));
            continue;
          }
          throw err;
        }
        // No fsync: the claim must survive a crash of this process (the page cache does), and
        // after a machine crash no sandbox is alive, so gc() against the live list frees all.
        try {
          fs.writeSync(fd, owner);
        } finally {
          fs.closeSync(fd);
        }
        this.owners.set(ip, owner);
        this.cursor = n;
        return ip;
      }
      throw new BerthError('ResourceExhausted', `podCidr ${this.cidr}: no free address left (${this.owners.size} allocated)`);
    });
  }

  /** Releases every address of `owner`; returns them. */
  release(owner: string): Promise<string[]> {
    return this.serial(() => this.releaseWhere((o) => o === owner));
  }

  /** Releases every address whose owner is not in `keep` (leaked by a crash or a lost DEL). */
  gc(keep: Iterable<string>): Promise<string[]> {
    const valid = new Set(keep);
    return this.serial(() => this.releaseWhere((o) => !valid.has(o)));
  }

  private releaseWhere(match: (owner: string) => boolean): string[] {
    const out: string[] = [];
    for (const [ip, o] of [...this.owners]) {
      if (!match(o)) continue;
      fs.rmSync(path.join(this.dir, ip), { force: true });
      this.owners.delete(ip);
      out.push(ip);
    }
    return out;
  }

  /** ip -> owner, a snapshot. */
  allocations(): Map<string, string> {
    return new Map(this.owners);
  }
}
