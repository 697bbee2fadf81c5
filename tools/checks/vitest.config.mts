import { berthVitestConfig } from '../vitest.shared.mts';

export default berthVitestConfig(process.cwd());
