// Resource quantities in the units the scheduler computes with: millicores for CPU and whole
// units (bytes, pods) for everything else, both rounded up like Kubernetes' MilliValue() and
// Value(). The grammar and the exact arithmetic are apimachinery's (one definition for the
// whole project); this module only converts and memoises. Pods and nodes repeat a handful of
// quantity strings ("100m", "128Mi", "4Gi"), so the exact (BigInt) parse runs once per
// distinct string and the scheduler's hot path reads a Map.
import { Quantity } from '@berth/apimachinery';

export { QuantityError } from '@berth/apimachinery';

// Bounded: quantities come from users, and a flood of distinct strings must not grow memory.
const MAX_MEMO = 4096;
const milliMemo = new Map<string, number>();
const unitMemo = new Map<string, number>();

function remember(memo: Map<string, number>, text: string, v: number): number {
  if (memo.size >= MAX_MEMO) memo.clear();
  memo.set(text, v);
  return v;
}

/** The quantity (exact, as apimachinery parses it); throws QuantityError naming the text. */
export function parseQuantity(text: string): Quantity {
  return Quantity.parse(text);
}

/** Millicores (or milli-units), rounded up: "100m" -> 100, "1.5" -> 1500. */
export function milliValue(text: string): number {
  return milliMemo.get(text) ?? remember(milliMemo, text, Number(Quantity.parse(text).milli()));
}

/** Whole units, rounded up: "64Mi" -> 67108864, "1G" -> 1e9, "100m" -> 1. */
export function value(text: string): number {
  return unitMemo.get(text) ?? remember(unitMemo, text, Number(Quantity.parse(text).value()));
}
