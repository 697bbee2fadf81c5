// The chaos run's kernel view: pod cgroups found through the QoS levels of a cgroupfs-shaped
// fixture (a temporary directory: the real tree is read the same way by `npm run chaos`), and the
// comparison with the Store and the cni-manager as a table.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { kernelMismatches, podCgroups } from './kernel';

let dir: string | undefined;
afterEach(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); dir = undefined; });

describe('podCgroups', () => {
  it('finds pod<uid> cgroups at every QoS level and counts the processes in them and below', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-chaos-cg-'));
    const mk = (rel: string, procs: number[]) => { fs.mkdirSync(path.join(dir!, rel), { recursive: true }); fs.writeFileSync(path.join(dir!, rel, 'cgroup.procs'), procs.map((p) => `${p}\n`).join('')); };
    mk('kubepods', []);
    mk('kubepods/podaaa-1', []);
    mk('kubepods/podaaa-1/ctr1', [10, 11]);
    mk('kubepods/besteffort/podbbb-2', [12]);
    mk('kubepods/burstable/podccc-3', []);
    expect(podCgroups(path.join(dir, 'kubepods'))).toEqual(new Map([['aaa-1', 2], ['bbb-2', 1], ['ccc-3', 0]]));
  });
});

describe('kernelMismatches', () => {
  const view = { podCgroups: new Map([['u1', 1], ['u2', 0], ['gone', 3], ['old', 0]]), veths: new Set(['veth1', 'vethX']) };
  it.each([
    { name: 'a Running pod without processes', pods: [{ uid: 'u2', name: 'b', phase: 'Running' }], want: /pod b is Running in the Store but no process runs/ },
    { name: 'a Failed pod with processes', pods: [{ uid: 'u1', name: 'a', phase: 'Failed' }], want: /pod a is Failed in the Store but 1 process\(es\) run/ },
    { name: 'processes of a pod the Store lost', pods: [], want: /3 process\(es\) run in the cgroup of pod uid gone/ },
    { name: 'an empty cgroup left behind', pods: [], want: /leaked cgroup of pod uid old/ },
    { name: 'a veth no attachment has', pods: [], want: /leaked link vethX/ },
    { name: 'an attachment whose veth is gone', pods: [], want: /attachment of a names veth veth2, which the kernel does not have/ },
  ])('$name', ({ pods, want }) => {
    const out = kernelMismatches('node-1', view, pods, [{ hostVeth: 'veth1', podName: 'a' }, { hostVeth: 'veth2', podName: 'a' }]);
    expect(out.some((m) => want.test(m)), out.join('\n')).toBe(true);
  });
  it('agrees when the kernel matches', () => {
    expect(kernelMismatches('node-1', { podCgroups: new Map([['u1', 2]]), veths: new Set(['veth1']) }, [{ uid: 'u1', name: 'a', phase: 'Running' }], [{ hostVeth: 'veth1', podName: 'a' }])).toEqual([]);
  });
});
