#!/usr/bin/env node
// `npm run bench -- <area> [args]`: runs the benchmark of one area. Each benchmark measures Berth
// and its peer side by side in the same run, prints medians and ratios, and writes JSON under
// bench/results/. Benchmarks are never part of `npm test`.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const AREAS = {
  etcd: 'packages/etcd-client/dist/bench/etcd.bench.js',
  store: 'packages/etcd-client/dist/bench/store.bench.js',
  runtime: 'packages/runtime-shim/dist/bench/runtime.bench.js',
  images: 'packages/runtime-shim/dist/bench/images.bench.js',
  sandbox: 'packages/runtime-shim/dist/bench/sandbox.bench.js',
  cni: 'packages/cni-manager/dist/bench/cni.bench.js',
  scheduler: 'packages/scheduler/dist/bench/scheduler.bench.js',
  pods: 'packages/kubelet-agent/dist/bench/pods.bench.js',
  floor: 'packages/kubelet-agent/dist/bench/floor.bench.js',
};
const [area, ...rest] = process.argv.slice(2);
if (!area || !AREAS[area]) {
  console.error(`usage: npm run bench -- <area>   (areas: ${Object.keys(AREAS).join(', ')})`);
  process.exit(2);
}
const script = path.join(root, AREAS[area]);
if (!fs.existsSync(script)) {
  console.error(`bench ${area}: not built yet (${AREAS[area]} is missing; its issue is still open)`);
  process.exit(2);
}
fs.mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
const r = spawnSync(process.execPath, [script, ...rest], {
  stdio: 'inherit',
  env: { ...process.env, BERTH_BENCH_RESULTS: path.join(root, 'bench', 'results') },
});
process.exit(r.status ?? 1);
