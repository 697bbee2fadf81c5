import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { checkBoundaries } from './boundaries';

const repo = path.resolve(__dirname, '..', '..', '..');

describe('module boundaries', () => {
  it('holds on this repository', () => {
    expect(checkBoundaries(repo)).toEqual([]);
  });

  describe('on a fixture tree', () => {
    let dir: string;
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    function pkg(d: string, name: string, type: string, deps: string[], src: string) {
      fs.mkdirSync(path.join(dir, d, 'src'), { recursive: true });
      fs.writeFileSync(path.join(dir, d, 'package.json'), JSON.stringify({ name, dependencies: Object.fromEntries(deps.map((x) => [x, '0.1.0'])) }));
      fs.writeFileSync(path.join(dir, d, 'project.json'), JSON.stringify({ tags: [`type:${type}`] }));
      fs.writeFileSync(path.join(dir, d, 'src', 'index.ts'), src);
    }

    it('rejects a service importing another service, deep imports and escapes', () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-boundaries-'));
      fs.mkdirSync(path.join(dir, 'packages'));
      pkg('native', '@berth/native', 'lib', [], 'export const x = 1;\n');
      pkg('packages/common', '@berth/common', 'lib', [], 'export const y = 1;\n');
      pkg('packages/scheduler', '@berth/scheduler', 'service', ['@berth/common'], "import { y } from '@berth/common';\n");
      pkg('packages/kubelet-agent', '@berth/kubelet-agent', 'service', ['@berth/scheduler'],
        "import { a } from '@berth/scheduler';\nimport { b } from '@berth/common/src/x';\nimport { c } from '../../scheduler/src/index';\n");
      pkg('packages/cli', '@berth/cli', 'app', ['@berth/scheduler', '@berth/common'], "import { a } from '@berth/scheduler';\n");
      const v = checkBoundaries(dir);
      const msgs = v.map((x) => `${x.file}:${x.line} ${x.message}`);
      expect(msgs).toEqual([
        'packages/kubelet-agent/package.json:0 service @berth/kubelet-agent must not depend on service @berth/scheduler',
        'packages/kubelet-agent/src/index.ts:1 service @berth/kubelet-agent imports service @berth/scheduler',
        'packages/kubelet-agent/src/index.ts:2 deep import "@berth/common/src/x": use the package\'s public entry',
        'packages/kubelet-agent/src/index.ts:2 imports @berth/common without declaring it in package.json',
        'packages/kubelet-agent/src/index.ts:3 relative import "../../scheduler/src/index" leaves the package',
      ]);
    });
  });
});
