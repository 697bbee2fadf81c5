// The cni bench's kernel floor: netlink-floor.c, compiled for the run with the system's cc and
// started once, doing for one pod the kernel work of Berth's bridge-mode SetUp (and TearDown)
// per command on its stdin. See netlink-floor.c for what it does and what each answer holds.
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as path from 'node:path';
import { createInterface } from 'node:readline';

/** One ADD as netlink-floor.c timed it, in ms: the whole op and its parts. */
export interface FloorAdd { total: number; create: number; nodeBatch: number; podBatch: number; arp: number }

export class NetlinkFloor {
  private readonly waiting: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = [];
  private stderr = '';
  private exited: Error | null = null;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (line) => this.waiting.shift()?.resolve(line));
    child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    child.on('exit', (code, signal) => {
      this.exited = new Error(`netlink-floor exited (${signal ?? code}): ${this.stderr.trim()}`);
      for (const w of this.waiting.splice(0)) w.reject(this.exited);
    });
  }

  get pid(): number { return this.child.pid!; }

  /**
   * Compiles the program into `dir` and starts it in this process's network namespace, with pod
   * addresses from `podNetwork` (its first address must be on `bridge`, which must exist).
   */
  static async start(dir: string, bridge: string, podNetwork: string): Promise<NetlinkFloor> {
    // From the source tree (tsc does not copy .c files into dist/).
    const src = path.resolve(__dirname, '..', '..', 'src', 'bench', 'netlink-floor.c');
    const bin = path.join(dir, 'netlink-floor');
    execFileSync('cc', ['-O2', '-Wall', '-o', bin, src, '-lpthread'], { stdio: 'inherit' });
    const floor = new NetlinkFloor(spawn(bin, [bridge, podNetwork], { stdio: ['pipe', 'pipe', 'pipe'] }));
    const first = await floor.next();
    if (first !== 'ready') throw new Error(`netlink-floor did not start: ${first}`);
    return floor;
  }

  private next(): Promise<string> {
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private async ask(cmd: string): Promise<number[]> {
    const answer = this.next();
    this.child.stdin.write(`${cmd}\n`);
    const line = await answer;
    if (line.startsWith('err ')) throw new Error(`netlink-floor ${cmd}: ${line.slice(4)}`);
    const us = line.split(' ').map(Number);
    if (us.length === 0 || us.some((x) => !Number.isFinite(x))) throw new Error(`netlink-floor ${cmd}: unexpected answer '${line}'`);
    return us.map((x) => x / 1000);
  }

  /** Attaches pod `i` (address: the network's 2 + i) in `netnsPath`; the program's own timings. */
  async add(i: number, netnsPath: string): Promise<FloorAdd> {
    const [total, create, nodeBatch, podBatch, arp] = await this.ask(`add ${i} ${netnsPath}`);
    if (arp === undefined) throw new Error(`netlink-floor add ${i}: expected 5 durations`);
    return { total: total!, create: create!, nodeBatch: nodeBatch!, podBatch: podBatch!, arp };
  }

  /** Deletes pod `i`'s veth pair; the program's own timing in ms. */
  async del(i: number, netnsPath: string): Promise<number> {
    return (await this.ask(`del ${i} ${netnsPath}`))[0]!;
  }

  /** The host end's name of pod `i` (as netlink-floor.c names it). */
  static hostName(i: number): string {
    return `bk${i.toString(16).padStart(8, '0')}`;
  }

  /** Ends the program (EOF on its stdin) and waits for it. */
  async stop(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  }
}
