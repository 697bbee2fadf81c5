import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectionFrom, localConnection, readConfig, resolveConfigPath, writeAdminConfig } from './kubeconfig';

describe('which config berth reads', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-kubeconfig-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('follows flag > $BERTH_KUBECONFIG > the local cluster in the environment > ~/.berth/config', () => {
    const home = path.join(dir, 'home');
    fs.mkdirSync(path.join(home, '.berth'), { recursive: true });
    fs.writeFileSync(path.join(home, '.berth', 'config'), 'apiVersion: v1\nkind: Config\n');
    expect(resolveConfigPath('/x', { HOME: home, BERTH_KUBECONFIG: '/y' }).path).toBe('/x');
    expect(resolveConfigPath(undefined, { HOME: home, BERTH_KUBECONFIG: '/y' }).path).toBe('/y');
    expect(resolveConfigPath(undefined, { HOME: home }).path).toBe(path.join(home, '.berth', 'config'));
    // A cluster named by $BERTH_RUN_DIR without an admin config: its unix socket, not ~/.berth/config.
    const env = { HOME: home, BERTH_RUN_DIR: path.join(dir, 'run'), BERTH_STATE_DIR: path.join(dir, 'state') };
    expect(resolveConfigPath(undefined, env).path).toBeUndefined();
    expect(localConnection(env).target).toBe(`unix://${path.join(dir, 'run', 'etcd-client.sock')}`);
    const file = writeAdminConfig({ stateDir: env.BERTH_STATE_DIR, runDir: env.BERTH_RUN_DIR });
    expect(resolveConfigPath(undefined, env).path).toBe(file);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(connectionFrom(readConfig(file), file)).toEqual({ target: `unix://${path.join(dir, 'run', 'etcd-client.sock')}`, namespace: 'default', context: 'local' });
  });

  it('names the problem in a broken config', () => {
    const f = path.join(dir, 'c');
    fs.writeFileSync(f, 'apiVersion: v1\nkind: Config\nclusterz: []\n');
    expect(() => readConfig(f)).toThrow(`${f}: unknown field "clusterz"`);
    fs.writeFileSync(f, 'apiVersion: v1\nkind: Config\ncurrent-context: nope\n');
    expect(() => connectionFrom(readConfig(f), f)).toThrow(`${f}: context "nope" does not exist`);
    fs.writeFileSync(f, 'contexts: [\n');
    expect(() => readConfig(f)).toThrow(/malformed YAML/);
  });
});
