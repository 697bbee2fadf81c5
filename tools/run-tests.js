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
for (const f of fs.readdirSync(results)) {
  try {
    const j = JSON.parse(fs.readFileSync(path.join(results, f), 'utf8'));
    projects++;
    passed += j.numPassedTests; failed += j.numFailedTests; skipped += j.numPendingTests + (j.numTodoTests || 0);
    if (j.numFailedTestSuites && !j.numFailedTests) failed += j.numFailedTestSuites; // a file that failed to load
  } catch { /* a project that crashed before reporting is caught by nx's exit code */ }
}
fs.rmSync(results, { recursive: true, force: true });
const code = r.status === 0 && failed === 0 ? 0 : 1;
if (r.status !== 0 && failed === 0) failed = 1; // nx failed outside a test (build, crash): count it
console.log(`\n${projects} projects tested`);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(code);
