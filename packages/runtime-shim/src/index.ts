export { spec } from './service';
// Test teardown helpers (kill monitors, unmount, remove state and cgroup trees) for other
// packages' tests that start a real berth-runtime-shim: one cleanup, not a copy per package.
export { removeCgroupTree, scrubStateDir } from './testing/cri';
