// Kubernetes resource quantities for the bandwidth annotations ("10M" = 10,000,000 bit/s,
// "1Gi" = 2^30) and tc-style rates for faults ("1mbit", "500kbit").
import { InvalidArgumentError } from '@berth/common';

const DECIMAL: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15 };
const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50 };

/** Bits per second from a Kubernetes quantity; `field` names the annotation on error. */
export function parseQuantity(value: string, field: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kMGTP]i?|)\s*$/.exec(value);
  const mult = m ? (DECIMAL[m[2]!] ?? BINARY[m[2]!]) : undefined;
  if (!m || mult === undefined) throw new InvalidArgumentError(field, `expected a quantity like 10M or 1Gi, got '${value}'`);
  const n = Math.round(Number(m[1]) * mult);
  if (n < 1000) throw new InvalidArgumentError(field, `${value} is below the 1k bit/s minimum`);
  if (n > 1e12) throw new InvalidArgumentError(field, `${value} is above the 1T bit/s maximum`);
  return n;
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
