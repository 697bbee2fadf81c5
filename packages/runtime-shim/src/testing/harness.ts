// Test harness: a Runtime under a unique temp --root whose containers are all force-deleted
// (processes, cgroups, state) and whose bundles are removed at teardown, also after failures.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import type { Spec } from '../oci/config';
import { Runtime, type RuntimeOptions } from '../runtime';
import { makeBundle, uniqueId, type Bundle } from './bundle';

export class Harness {
  readonly root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-rt-root-'));
  readonly rt: Runtime;
  private readonly bundles: Bundle[] = [];
  private readonly files: string[] = [];

  /** `opts`: more RuntimeOptions (e.g. oneShot, the CLI's way of cloning the init). */
  constructor(opts: Omit<Partial<RuntimeOptions>, 'root'> = {}) {
    this.rt = new Runtime({ root: this.root, ...opts });
  }

  bundle(args: string[], edit?: (spec: Spec) => void): Bundle {
    const b = makeBundle(args, edit);
    this.bundles.push(b);
    return b;
  }

  /** An output file for a container's stdout+stderr. */
  outFile(): { fd: number; read: () => string } {
    const file = path.join(this.root, `${uniqueId('out')}.log`);
    this.files.push(file);
    const fd = fs.openSync(file, 'w+');
    return { fd, read: () => fs.readFileSync(file, 'utf8') };
  }

  /** Runs `args` to completion in a fresh container; returns exit code and output. */
  async run(args: string[], edit?: (spec: Spec) => void, id = uniqueId()): Promise<{ code: number; out: string; id: string }> {
    const b = this.bundle(args, edit);
    const o = this.outFile();
    const nul = fs.openSync('/dev/null', 'r');
    try {
      const code = await this.rt.run(id, { bundle: b.dir, stdio: [nul, o.fd, o.fd] });
      return { code, out: o.read(), id };
    } finally {
      fs.closeSync(nul);
      fs.closeSync(o.fd);
    }
  }

  /** Host mount table lines under this harness's root or bundles (a leak would show here). */
  leakedMounts(): string[] {
    const prefixes = [this.root, ...this.bundles.map((b) => b.dir)];
    return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => prefixes.some((p) => l.includes(p)));
  }

  async cleanup(): Promise<void> {
    for (const id of this.rt.store.ids()) await this.rt.delete(id, true).catch(() => undefined);
    for (const b of this.bundles) b.remove();
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}
