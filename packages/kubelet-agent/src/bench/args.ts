// Command-line numbers of the kubelet-agent benches: `--name N`, a positive integer.
export function intArg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`--${name}: expected a positive integer, got ${JSON.stringify(process.argv[i + 1])}`);
  return v;
}
