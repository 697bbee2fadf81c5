// Resource quantities ("100m", "1.5", "64Mi", "1G", "2e3") as the scheduler needs them: CPU in
// millicores and everything else in whole units, both rounded up like Kubernetes' MilliValue()
// and Value(). Kept behind this one module so a shared parser can replace it later.

const SUFFIX: Record<string, number> = {
  n: 1e-9, u: 1e-6, m: 1e-3, '': 1,
  k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

const RE = /^([+-]?)(\d+\.?\d*|\.\d+)(?:([eE][+-]?\d+)|(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei))?$/;

export class QuantityError extends Error {}

/** The quantity as a float in base units; throws QuantityError naming the text. */
export function parseQuantity(text: string): number {
  const m = RE.exec(text.trim());
  if (!m) throw new QuantityError(`"${text}" is not a valid quantity (e.g. 100m, 1.5, 64Mi, 1G)`);
  let v = Number(m[2]);
  if (m[3]) v *= 10 ** Number(m[3].slice(1));
  else v *= SUFFIX[m[4] ?? ''];
  return m[1] === '-' ? -v : v;
}

// Rounding up after multiplying needs a little slack: 0.1*1000 is 100.00000000000001 in doubles.
function ceilExact(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - r) < 1e-9 * Math.max(1, Math.abs(v)) ? r : Math.ceil(v);
}

/** Millicores (or milli-units), rounded up: "100m" -> 100, "1.5" -> 1500. */
export function milliValue(text: string): number {
  return ceilExact(parseQuantity(text) * 1000);
}

/** Whole units, rounded up: "64Mi" -> 67108864, "1G" -> 1e9, "100m" -> 1. */
export function value(text: string): number {
  return ceilExact(parseQuantity(text));
}
