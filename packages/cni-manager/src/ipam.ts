// IpamStore: pod addresses from one node CIDR, persisted on disk crash-safely.
//
// One file per allocated address (`<dir>/<ip>`, content: the sandbox id), claimed with
// O_CREAT|O_EXCL: the kernel makes the claim atomic, so neither a concurrent process nor a
// restart after kill -9 can hand the same address out twice. A claim whose owner was never
// written (a crash between create and write) has an empty owner and is released by gc().
// Within this process calls are serialised, so the in-memory index always matches the files.
import * as fs from 'node:fs';
import { isIPv4 } from 'node:net';
import * as path from 'node:path';
import { InvalidArgumentError, BerthError } from '@berth/common';
import { intToIp, ipToInt, parseCidr } from '@berth/native';

export interface IpamOptions {
  /** The node's pod CIDR, e.g. 10.88.0.0/24. */
  cidr: string;
  /** Gateway address (default: the first host address). Never allocated. */
  gateway?: string;
  /** Further addresses never handed out. */
  reserved?: string[];
}

export class IpamStore {
  readonly network: number;
  readonly prefix: number;
  readonly gateway: string;
  private readonly first: number;
  private readonly last: number;
  private readonly reserved: Set<number>;
  /** ip -> sandbox id; guarded by `lock`. */
  private readonly owners = new Map<string, string>();
  private lock: Promise<unknown> = Promise.resolve();
  private cursor: number;

  constructor(readonly dir: string, opts: IpamOptions) {
    let cidr: { ip: string; prefix: number };
    try {
      cidr = parseCidr(opts.cidr, 'podCidr');
    } catch (err) {
      throw new InvalidArgumentError('podCidr', `expected an IPv4 CIDR like 10.88.0.0/16, got '${opts.cidr}'`, { cause: err });
    }
    if (cidr.prefix > 30) throw new InvalidArgumentError('podCidr', `${opts.cidr} is too small for pods (at most /30)`);
    const mask = cidr.prefix === 0 ? 0 : (~0 << (32 - cidr.prefix)) >>> 0;
    this.network = (ipToInt(cidr.ip) & mask) >>> 0;
    this.prefix = cidr.prefix;
    this.first = this.network + 1;
    this.last = (this.network | (~mask >>> 0)) - 1;
    this.gateway = opts.gateway ?? intToIp(this.first);
    if (!this.contains(this.gateway)) throw new InvalidArgumentError('gateway', `${this.gateway} is not inside ${this.cidr}`);
    this.reserved = new Set([ipToInt(this.gateway), ...(opts.reserved ?? []).map((r) => ipToInt(r))]);
    this.cursor = this.first - 1;
  }

  /** Reads the allocations on disk (creating the directory). Call once before use. */
  load(): this {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.owners.clear();
    for (const name of fs.readdirSync(this.dir)) {
      if (!isIPv4(name)) continue;
      this.owners.set(name, fs.readFileSync(path.join(this.dir, name), 'utf8'));
    }
    // Round-robin resumes after the highest address in use (the cursor itself is not persisted:
    // rewriting a file on every allocation would cost an ext4 flush).
    this.cursor = Math.max(this.first - 1, ...[...this.owners.keys()].map((ip) => ipToInt(ip)));
    return this;
  }

  get cidr(): string {
    return `${intToIp(this.network)}/${this.prefix}`;
  }

  contains(ip: string): boolean {
    const n = ipToInt(ip);
    const mask = this.prefix === 0 ? 0 : (~0 << (32 - this.prefix)) >>> 0;
    return ((n & mask) >>> 0) === this.network;
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
      const size = this.last - this.first + 1;
      for (let i = 1; i <= size; i++) {
        const n = this.first + ((this.cursor - this.first + i) % size + size) % size;
        if (this.reserved.has(n)) continue;
        const ip = intToIp(n);
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
