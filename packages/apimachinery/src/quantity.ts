// Kubernetes resource quantities ("100m", "1.5", "64Mi", "1G", "1e3"): parsed into an exact
// integer count of nano-units (BigInt), so that comparing and adding never loses precision the
// way floating point would (0.1 + 0.2 CPUs is exactly 300m).

export class QuantityError extends Error {
  constructor(readonly input: string, reason: string) {
    super(`quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': ${reason}`);
    this.name = 'QuantityError';
  }
}

const BINARY: Record<string, bigint> = { Ki: 1n << 10n, Mi: 1n << 20n, Gi: 1n << 30n, Ti: 1n << 40n, Pi: 1n << 50n, Ei: 1n << 60n };
// Exponent of ten of each decimal suffix.
const DECIMAL: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const NANO = 1_000_000_000n;
const RE = /^([+-]?)(\d+\.?\d*|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$/;

export type QuantityFormat = 'BinarySI' | 'DecimalSI' | 'DecimalExponent';

/** An exact quantity: `nanos` units of 10^-9. */
export class Quantity {
  private constructor(readonly nanos: bigint, readonly format: QuantityFormat) {}

  static parse(s: string): Quantity {
    if (typeof s !== 'string' || s.length === 0) throw new QuantityError(String(s), 'empty');
    const m = RE.exec(s.trim() === s ? s : '');
    if (!m) throw new QuantityError(s, `invalid quantity ${JSON.stringify(s)}`);
    const [, sign, num, suffix = ''] = m;
    const [intPart, frac = ''] = num.split('.');
    let digits = BigInt((intPart || '0') + frac);
    let exp10 = -frac.length;
    let mult = 1n;
    let format: QuantityFormat = 'DecimalSI';
    if (suffix in BINARY) {
      mult = BINARY[suffix];
      format = 'BinarySI';
    } else if (suffix in DECIMAL) {
      exp10 += DECIMAL[suffix];
    } else {
      exp10 += Number(suffix.slice(1));
      format = 'DecimalExponent';
    }
    if (Math.abs(exp10) > 60) throw new QuantityError(s, 'exponent out of range');
    digits *= mult;
    // nanos = digits * 10^(exp10 + 9); below a nano, round up as Kubernetes does.
    const e = exp10 + 9;
    let nanos: bigint;
    if (e >= 0) nanos = digits * 10n ** BigInt(e);
    else {
      const div = 10n ** BigInt(-e);
      nanos = digits / div + (digits % div === 0n ? 0n : 1n);
    }
    return new Quantity(sign === '-' ? -nanos : nanos, format);
  }

  static fromNanos(nanos: bigint, format: QuantityFormat = 'DecimalSI'): Quantity {
    return new Quantity(nanos, format);
  }
  static zero(format: QuantityFormat = 'DecimalSI'): Quantity {
    return new Quantity(0n, format);
  }

  cmp(o: Quantity): -1 | 0 | 1 {
    return this.nanos < o.nanos ? -1 : this.nanos > o.nanos ? 1 : 0;
  }
  add(o: Quantity): Quantity {
    return new Quantity(this.nanos + o.nanos, this.nanos === 0n ? o.format : this.format);
  }
  sub(o: Quantity): Quantity {
    return new Quantity(this.nanos - o.nanos, this.format);
  }
  mul(n: number): Quantity {
    return new Quantity(this.nanos * BigInt(n), this.format);
  }
  isZero(): boolean {
    return this.nanos === 0n;
  }
  /** Milli-units, rounded up (what CPU shares and quotas use). */
  milli(): bigint {
    const d = 1_000_000n;
    return this.nanos / d + (this.nanos % d > 0n ? 1n : 0n);
  }
  /** Whole units, rounded up (bytes for memory). */
  value(): bigint {
    return this.nanos / NANO + (this.nanos % NANO > 0n ? 1n : 0n);
  }
  toNumber(): number {
    return Number(this.nanos) / 1e9;
  }

  /** Canonical form, as Kubernetes prints it: "100m", "1500m", "64Mi", "1G", "2". */
  toString(): string {
    const neg = this.nanos < 0n;
    const n = neg ? -this.nanos : this.nanos;
    const sign = neg ? '-' : '';
    if (n === 0n) return '0';
    if (this.format === 'BinarySI' && n % NANO === 0n) {
      const v = n / NANO;
      const suffixes = ['Ei', 'Pi', 'Ti', 'Gi', 'Mi', 'Ki'] as const;
      for (const s of suffixes) if (v >= BINARY[s] && v % BINARY[s] === 0n) return `${sign}${v / BINARY[s]}${s}`;
      if (v < 1024n) return `${sign}${v}`;
      // Not a whole binary multiple: fall through to decimal.
    }
    // Decimal: the largest suffix that keeps an integer mantissa.
    const steps: [string, number][] = [['E', 27], ['P', 24], ['T', 21], ['G', 18], ['M', 15], ['k', 12], ['', 9], ['m', 6], ['u', 3], ['n', 0]];
    for (const [s, e] of steps) {
      const d = 10n ** BigInt(e);
      if (n % d === 0n) return `${sign}${n / d}${s}`;
    }
    return `${sign}${n}n`;
  }
}

export function parseQuantity(s: string): Quantity {
  return Quantity.parse(s);
}

export function isQuantity(s: string): boolean {
  try { Quantity.parse(s); return true; } catch { return false; }
}

/** Sums ResourceLists (map of resource name to quantity string) exactly. */
export function addResourceLists(...lists: (Record<string, string> | undefined)[]): Record<string, Quantity> {
  const out: Record<string, Quantity> = {};
  for (const l of lists) {
    for (const [k, v] of Object.entries(l ?? {})) {
      const q = Quantity.parse(v);
      out[k] = out[k] ? out[k].add(q) : q;
    }
  }
  return out;
}

export function formatResourceList(l: Record<string, Quantity>): Record<string, string> {
  return Object.fromEntries(Object.entries(l).map(([k, v]) => [k, v.toString()]));
}
