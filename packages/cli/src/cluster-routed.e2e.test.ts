// End to end on `berth up --nodes 2 --network routed` with the examples that cross nodes: web
// and the UDP echo on node-1, the tolerant pod on node-2 (the suite is in cluster-testing/e2e.ts).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe } from 'vitest';
import { DEFAULT_EXAMPLES } from './cluster-examples';
import { clusterSuite } from './cluster-testing/e2e';

describe('berth up --nodes 2 --network routed', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-e2e-examples-'));
    for (const f of ['web.yaml', 'udp-echo.yaml', 'placement.yaml']) fs.copyFileSync(path.join(DEFAULT_EXAMPLES, f), path.join(dir, f));
  });
  afterAll(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });
  clusterSuite('routed', () => dir);
});
