#!/usr/bin/env node
// `npm test` after bootstrap: every project's tests through Nx (never cached: they touch the
// real kernel and real etcd), then one total over all projects as `N passed, N failed`.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const results = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-test-results-'));
const extra = process.argv.slice(2);
const env = { ...process.env, BERTH_TEST_RESULTS: results, NX_DAEMON: 'false', NX_NO_CLOUD: 'true', NX_TUI: 'false', FORCE_COLOR: process.stdout.isTTY ? '1' : '0' };
const r = spawnSync(path.join(root, 'node_modules', '.bin', 'nx'),
  ['run-many', '-t', 'test', '--parallel=2', '--outputStyle=stream', '--skip-nx-cache', ...extra],
  { cwd: root, env, stdio: 'inherit' });

let passed = 0, failed = 0, skipped = 0, projects = 0;
const failures = []; // printed last: a CI log is often read from its tail only
for (const f of fs.readdirSync(results)) {
  try {
    const j = JSON.parse(fs.readFileSync(path.join(results, f), 'utf8'));
    projects++;
    passed += j.numPassedTests; failed += j.numFailedTests; skipped += j.numPendingTests + (j.numTodoTests || 0);
    if (j.numFailedTestSuites && !j.numFailedTests) failed += j.numFailedTestSuites; // a file that failed to load
    for (const file of j.testResults || []) {
      const rel = path.relative(root, file.name || '');
      const bad = (file.assertionResults || []).filter((a) => a.status === 'failed');
      for (const a of bad) failures.push(`${rel} > ${a.fullName || a.title}\n    ${firstLines(a.failureMessages)}`);
      if (!bad.length && file.status === 'failed') failures.push(`${rel}\n    ${firstLines([file.message])}`);
    }
  } catch { /* a project that crashed before reporting is caught by nx's exit code */ }
}
function firstLines(msgs) {
  return String((msgs || []).join('\n')).split('\n').filter(Boolean).slice(0, 8).join('\n    ');
}
fs.rmSync(results, { recursive: true, force: true });
const code = r.status === 0 && failed === 0 ? 0 : 1;
if (r.status !== 0 && failed === 0) failed = 1; // nx failed outside a test (build, crash): count it
if (failures.length) console.log(`\nFailed tests:\n${failures.map((x) => `  ${x}`).join('\n')}`);
console.log(`\n${projects} projects tested`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(code);
