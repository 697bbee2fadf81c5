// Entry point of `npm run chaos` (see chaos.ts): runs one bounded chaos run, prints a summary,
// writes bench/results/chaos-<time>.json and exits 1 if an invariant failed (2: bad flags).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CommandUsageError } from '../cluster-flags';
import { CHAOS_HELP, chaos, parseChaosArgs } from './chaos';

async function main(): Promise<number> {
  let o;
  try { o = parseChaosArgs(process.argv.slice(2)); } catch (e) {
    if (e instanceof CommandUsageError || e instanceof Error) { process.stderr.write(`chaos: ${e.message}\n\n${CHAOS_HELP}`); return 2; }
    throw e;
  }
  if (o === 'help') { process.stdout.write(CHAOS_HELP); return 0; }
  if (process.getuid?.() !== 0) { process.stderr.write('chaos: needs root (berth up makes network namespaces and cgroups)\n'); return 2; }
  const r = await chaos(o);
  fs.mkdirSync(o.resultsDir, { recursive: true });
  const file = path.join(o.resultsDir, `chaos-${r.startedAt.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(r, null, 2));
  const backs = r.kills.map((k) => k.backAfterMs).filter((x): x is number => x !== null).sort((a, b) => a - b);
  const applied = r.faults.filter((f) => f.applied.length).length;
  console.log('');
  console.log('chaos summary');
  console.log(`  duration         ${Math.round(o.durationMs / 1000)} s on ${o.nodes} nodes (${o.network})`);
  console.log(`  pods             ${r.created} created, ${r.deleted} deleted (${r.createErrors} create / ${r.deleteErrors} delete errors while services were down)`);
  console.log(`  service kills    ${r.kills.length}: ${r.kills.map((k) => `${k.service} ${k.backAfterMs === null ? 'NOT BACK' : `back in ${(k.backAfterMs / 1000).toFixed(1)} s`}`).join(', ') || 'none'}`);
  if (backs.length) console.log(`  restart median   ${(backs[Math.floor(backs.length / 2)] / 1000).toFixed(1)} s`);
  console.log(`  pod faults       ${r.faults.length} injected, ${applied} applied${r.faults.some((f) => f.unsupported.length) ? `; unsupported: ${[...new Set(r.faults.flatMap((f) => f.unsupported))].join('; ')}` : ''}${r.faults.some((f) => f.error) ? `; errors: ${[...new Set(r.faults.map((f) => f.error).filter(Boolean))].join('; ')}` : ''}`);
  console.log(`  watch            ${r.watch.events} events, ${r.watch.restarts} stream restarts, ${r.watch.relists} relists`);
  console.log(`  at the end       ${r.final.podsInStore} pods in the Store, ${r.final.running} Running; settled in ${(r.final.settleMs / 1000).toFixed(1)} s (${r.final.mismatchesAtFirstCheck} mismatches at the first check)`);
  console.log(`  invariants       ${r.ok ? 'all hold' : `${r.violations.length} violated:`}`);
  for (const x of r.violations) console.log(`    - ${x}`);
  console.log(`  results          ${file}`);
  return r.ok ? 0 : 1;
}

main().then((code) => process.exit(code), (e: unknown) => { process.stderr.write(`chaos: ${(e as Error).stack ?? String(e)}\n`); process.exit(1); });
