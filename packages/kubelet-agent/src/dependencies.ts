// Start-up checks of what the agent depends on: each configured service must answer its health
// check; the result names every missing one, so "why does my node not run pods" has an answer
// in the first log line.
import { checkHealth } from '@berth/common';

export interface Dependency {
  name: string;
  endpoint: string;
  /** gRPC service name whose health is checked ("" = the server overall). */
  service?: string;
}

export interface DependencyReport {
  ok: Dependency[];
  missing: (Dependency & { reason: string })[];
}

export async function checkDependencies(deps: Dependency[], timeoutMs = 1000): Promise<DependencyReport> {
  const results = await Promise.all(deps.map(async (d) => ({ d, status: await checkHealth(d.endpoint, d.service ?? '', { timeoutMs }) })));
  const report: DependencyReport = { ok: [], missing: [] };
  for (const { d, status } of results) {
    if (status === 'SERVING') report.ok.push(d);
    else report.missing.push({ ...d, reason: status });
  }
  return report;
}

export function describeMissing(r: DependencyReport): string {
  return r.missing.map((m) => `${m.name} at ${m.endpoint} (${m.reason})`).join('; ');
}
