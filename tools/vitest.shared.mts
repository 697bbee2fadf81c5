// Shared vitest settings for every package. When BERTH_TEST_RESULTS is set (tools/run-tests.js),
// each package also writes a JSON report there so the run can print one total at the end.
import * as path from 'node:path';
import { defineConfig } from 'vitest/config';

export function berthVitestConfig(dir: string = process.cwd(), overrides: { testTimeout?: number; fileParallelism?: boolean } = {}) {
  const results = process.env.BERTH_TEST_RESULTS;
  const name = path.basename(dir);
  return defineConfig({
    test: {
      include: ['src/**/*.test.ts'],
      testTimeout: overrides.testTimeout ?? 60_000,
      hookTimeout: 60_000,
      fileParallelism: overrides.fileParallelism ?? true,
      maxWorkers: 2,
      reporters: results ? ['default', ['json', { outputFile: path.join(results, `${name}.json`) }]] : ['default'],
      passWithNoTests: false,
    },
  });
}
