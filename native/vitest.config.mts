import { berthVitestConfig } from '../tools/vitest.shared.mts';

export default berthVitestConfig(process.cwd());
