// Rates in bits per second: Kubernetes quantities for the bandwidth annotations ("10M" =
// 10,000,000 bit/s, "1Gi" = 2^30), parsed by apimachinery's one quantity parser, and tc-style
// rates for faults ("1mbit", "500kbit").
import { Quantity } from '@berth/apimachinery';
import { InvalidArgumentError } from '@berth/common';

// The kubelet's limits for the bandwidth annotations.
const MIN_BANDWIDTH = 1000n; // 1k
const MAX_BANDWIDTH = 10n ** 15n; // 1P

/** Bits per second from a Kubernetes quantity; `field` names the annotation on error. */
export function parseBandwidth(value: string, field: string): number {
  let q: Quantity;
  try {
    q = Quantity.parse(value.trim());
  } catch {
    throw new InvalidArgumentError(field, `expected a quantity like 10M or 1Gi, got '${value}'`);
  }
  if (q.nanos < 0n) throw new InvalidArgumentError(field, `${value} is negative`);
  const bits = q.value();
  if (bits < MIN_BANDWIDTH) throw new InvalidArgumentError(field, `${value} is below the 1k bit/s minimum`);
  if (bits > MAX_BANDWIDTH) throw new InvalidArgumentError(field, `${value} is above the 1P bit/s maximum`);
  return Number(bits);
}

const TC_UNITS: Record<string, number> = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, tbit: 1e12, bps: 8, kbps: 8e3, mbps: 8e6, gbps: 8e9 };

/** Bits per second from a tc rate such as "1mbit" or "500kbit". */
export function parseTcRate(value: string, field: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const mult = m ? TC_UNITS[(m[2] || 'bit').toLowerCase()] : undefined;
  if (!m || mult === undefined) throw new InvalidArgumentError(field, `expected a tc rate like 1mbit or 500kbit, got '${value}'`);
  const n = Math.round(Number(m[1]) * mult);
  if (n < 1000) throw new InvalidArgumentError(field, `${value} is below 1kbit`);
  return n;
}
