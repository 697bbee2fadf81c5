// Progress bars for `berth runtime pull|import`: one line per layer, redrawn in place on a
// terminal; on anything else a line per state change, so logs stay readable.
export interface ProgressLine {
  id: string;
  current: number;
  total: number;
  status: string;
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

export function renderLine(p: ProgressLine, width = 24): string {
  const id = p.id.startsWith('sha256:') ? p.id.slice(7, 19) : p.id.slice(0, 24);
  if (!p.total || p.status === 'exists' || p.status === 'done') {
    const size = p.total ? ` ${mb(p.total)}` : '';
    return `${id.padEnd(12)} ${p.status.padEnd(11)}${size}`;
  }
  const frac = Math.max(0, Math.min(1, p.current / p.total));
  const filled = Math.round(frac * width);
  const bar = `${'='.repeat(Math.max(0, filled - 1))}${filled ? '>' : ''}${' '.repeat(width - filled)}`;
  return `${id.padEnd(12)} ${p.status.padEnd(11)} [${bar}] ${mb(p.current)}/${mb(p.total)}`;
}

export class ProgressBars {
  private readonly lines = new Map<string, ProgressLine>();
  private drawn = 0;
  private lastDraw = 0;
  private readonly lastStatus = new Map<string, string>();

  constructor(private readonly write: (s: string) => void, private readonly tty: boolean, private readonly now: () => number = Date.now) {}

  update(p: ProgressLine): void {
    this.lines.set(p.id, p);
    if (!this.tty) {
      if (this.lastStatus.get(p.id) !== p.status) { this.lastStatus.set(p.id, p.status); this.write(`${renderLine(p)}\n`); }
      return;
    }
    if (this.now() - this.lastDraw >= 100 || p.status === 'done' || p.status === 'exists') this.draw();
  }

  /** Final redraw on a terminal. */
  finish(): void {
    if (this.tty) this.draw();
  }

  private draw(): void {
    this.lastDraw = this.now();
    let out = this.drawn ? `\x1b[${this.drawn}A` : '';
    for (const l of this.lines.values()) out += `\x1b[2K${renderLine(l)}\n`;
    this.drawn = this.lines.size;
    this.write(out);
  }
}
