// IpamStore: pod addresses from one node CIDR, persisted on disk crash-safely.
//
// Claims and releases are appended to a journal (`<dir>/ipv4.journal` or `ipv6.journal`, see
// journal.ts): a claim is on disk, one write(2), before the address is used, so a restart
// after kill -9 never hands it out twice. The journal's lock keeps other processes out for as
// long as the store is open (load() waits for it or fails naming the holder), so the
// in-memory index is the whole truth. Earlier versions kept one file per address; load()
// takes those over.
import * as fs from 'node:fs';
import { isIP } from 'node:net';
import * as path from 'node:path';
import { InvalidArgumentError, BerthError } from '@berth/common';
import { ipBytes, ipString, parseIpCidr } from '@berth/native';
import { Journal, type JournalOptions } from './journal';

/** A claim of `a` by owner `o`, or the release of `r`. */
type IpamEntry = { a: string; o: string } | { r: string };

function applyEntry(owners: Map<string, string>, e: IpamEntry): void {
  if ('a' in e) owners.set(e.a, e.o);
  else owners.delete(e.r);
}

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
  if (!v6) {
    const x = Number(n);
    return `${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`;
  }
  return ipString(Buffer.from(n.toString(16).padStart(32, '0'), 'hex'));
}

export class IpamStore {
  readonly network: bigint;
  readonly prefix: number;
  readonly gateway: string;
  readonly family: 4 | 6;
  private readonly cidrString: string;
  private readonly first: bigint;
  private readonly last: bigint;
  private readonly reserved: Set<bigint>;
  /** ip -> sandbox id; guarded by `lock`. */
  private readonly owners = new Map<string, string>();
  private lock: Promise<unknown> = Promise.resolve();
  private cursor: bigint;
  private journal: Journal<IpamEntry> | null = null;

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
    this.cidrString = `${fromBig(this.network, this.family === 6)}/${this.prefix}`;
    this.first = this.network + 1n;
    // IPv4 keeps the broadcast address out; IPv6 has none, but the last one stays free too.
    this.last = (this.network | host) - 1n;
    this.gateway = opts.gateway ?? fromBig(this.first, this.family === 6);
    if (!this.contains(this.gateway)) throw new InvalidArgumentError('gateway', `${this.gateway} is not inside ${this.cidr}`);
    this.reserved = new Set([toBig(this.gateway), ...(opts.reserved ?? []).map((r) => toBig(r))]);
    this.cursor = this.first - 1n;
  }

  /**
   * Reads the allocations on disk (creating the directory) and holds the store's lock until
   * close(): waits up to `waitMs` for another process holding it, else fails naming it.
   */
  async load(o: JournalOptions = {}): Promise<this> {
    this.journal?.close();
    this.owners.clear();
    this.journal = await Journal.open<IpamEntry>(path.join(this.dir, `ipv${this.family}.journal`), (e) => applyEntry(this.owners, e), o);
    this.adoptClaimFiles();
    // Round-robin resumes after the highest address in use (the cursor itself is not persisted).
    this.cursor = this.first - 1n;
    for (const ip of this.owners.keys()) {
      const n = toBig(ip);
      if (n > this.cursor) this.cursor = n;
    }
    this.journal.compact(() => this.liveEntries());
    return this;
  }

  /** The claims on disk in `dir` (ip -> owner), read without the lock: for inspection and tests. */
  static claimsOnDisk(dir: string, family: 4 | 6 = 4): Map<string, string> {
    const owners = new Map<string, string>();
    Journal.read<IpamEntry>(path.join(dir, `ipv${family}.journal`), (e) => applyEntry(owners, e));
    return owners;
  }

  /** Releases the lock; the store must be loaded again before use. */
  close(): void {
    this.journal?.close();
    this.journal = null;
  }

  /** Claims kept as one file per address (`<dir>/<ip>`, content: the owner) by earlier versions. */
  private adoptClaimFiles(): void {
    for (const name of fs.readdirSync(this.dir)) {
      if (isIP(name) !== this.family) continue;
      const file = path.join(this.dir, name);
      const owner = fs.readFileSync(file, 'utf8');
      if (!this.owners.has(name)) this.claim(name, owner);
      fs.rmSync(file, { force: true });
    }
  }

  private liveEntries(): IpamEntry[] {
    return [...this.owners].map(([a, o]) => ({ a, o }));
  }

  private claim(ip: string, owner: string): void {
    if (!this.journal) throw new Error(`IPAM ${this.dir} is not loaded`);
    this.journal.append({ a: ip, o: owner });
    this.owners.set(ip, owner);
  }

  get cidr(): string {
    return this.cidrString;
  }

  /** How many addresses are allocated (without the copy `allocations()` makes). */
  get size(): number {
    return this.owners.size;
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
      // Every address visited and skipped is a known one (taken or reserved), so one more than
      // those is enough: a huge IPv6 range is never walked in full, and a full range is detected.
      for (let i = 1n; i <= size && i <= BigInt(this.owners.size + this.reserved.size + 1); i++) {
        const n = this.first + ((((this.cursor - this.first + i) % size) + size) % size);
        if (this.reserved.has(n)) continue;
        const ip = fromBig(n, this.family === 6);
        if (this.owners.has(ip)) continue;
        this.claim(ip, owner);
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
    if (!this.journal) throw new Error(`IPAM ${this.dir} is not loaded`);
    const out: string[] = [];
    for (const [ip, o] of [...this.owners]) {
      if (!match(o)) continue;
      this.journal.append({ r: ip });
      this.owners.delete(ip);
      out.push(ip);
    }
    if (out.length) this.journal.compact(() => this.liveEntries());
    return out;
  }

  /** ip -> owner, a snapshot. */
  allocations(): Map<string, string> {
    return new Map(this.owners);
  }
}
