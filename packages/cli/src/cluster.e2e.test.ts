// End to end on `berth up --nodes 2 --network bridge` with every example (the suite is in
// cluster-testing/e2e.ts; cluster-routed.e2e.test.ts runs it in routed mode beside this one).
import { describe } from 'vitest';
import { DEFAULT_EXAMPLES } from './cluster-examples';
import { clusterSuite } from './cluster-testing/e2e';

describe('berth up --nodes 2 --network bridge (every example)', () => {
  clusterSuite('bridge', () => DEFAULT_EXAMPLES);
});
