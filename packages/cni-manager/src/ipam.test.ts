// IpamStore on a real directory: round-robin, reserved addresses, exhaustion, restart,
// concurrent processes sharing the directory, and GC.
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IpamStore } from './ipam';

let dir: string;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ipam-')); });
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('IpamStore', () => {
  it('hands out addresses round-robin after the gateway and reserved ones, and reuses released ones last', async () => {
    const ipam = new IpamStore(dir, { cidr: '10.1.0.0/29', reserved: ['10.1.0.3'] }).load();
    expect(ipam.gateway).toBe('10.1.0.1');
    expect(await ipam.allocate('a')).toBe('10.1.0.2');
    expect(await ipam.allocate('a')).toBe('10.1.0.2'); // idempotent per owner
    expect(await ipam.allocate('b')).toBe('10.1.0.4');
    expect(await ipam.release('a')).toEqual(['10.1.0.2']);
    expect(await ipam.allocate('c')).toBe('10.1.0.5');
    expect(await ipam.allocate('d')).toBe('10.1.0.6');
    expect(await ipam.allocate('e')).toBe('10.1.0.2'); // wrapped around
    await expect(ipam.allocate('f')).rejects.toThrow(/podCidr 10.1.0.0\/29: no free address left/);
  });

  it('allocates IPv6 from a /64 without walking it, and keeps the claims across a restart', async () => {
    const ipam = new IpamStore(dir, { cidr: 'fd00:77::/64', field: 'podCidrV6' }).load();
    expect(ipam.gateway).toBe('fd00:77::1');
    expect(await ipam.allocate('a')).toBe('fd00:77::2');
    expect(await ipam.allocate('b')).toBe('fd00:77::3');
    const again = new IpamStore(dir, { cidr: 'fd00:77::/64', field: 'podCidrV6' }).load();
    expect(await again.allocate('c')).toBe('fd00:77::4');
    expect(() => new IpamStore(dir, { cidr: 'fd00::/127', field: 'podCidrV6' })).toThrow(/podCidrV6: fd00::\/127 is too small/);
    // The IPv4 store of the same directory ignores IPv6 claims and vice versa.
    expect(new IpamStore(dir, { cidr: '10.9.0.0/24' }).load().allocations().size).toBe(0);
  });

  it('rejects malformed or unusable CIDRs naming the field', () => {
    expect(() => new IpamStore(dir, { cidr: '10.1.0.0/33' })).toThrow(/podCidr: expected an IPv4 CIDR/);
    expect(() => new IpamStore(dir, { cidr: 'banana' })).toThrow(/podCidr/);
    expect(() => new IpamStore(dir, { cidr: '10.1.0.0/31' })).toThrow(/too small/);
    expect(() => new IpamStore(dir, { cidr: '10.1.0.0/24', gateway: '10.2.0.1' })).toThrow(/gateway: 10.2.0.1 is not inside 10.1.0.0\/24/);
  });

  it('keeps allocations across a restart and garbage-collects leaked ones', async () => {
    const a = new IpamStore(dir, { cidr: '10.2.0.0/24' }).load();
    await a.allocate('live');
    await a.allocate('leaked');
    fs.writeFileSync(path.join(dir, '10.2.0.9'), ''); // a claim torn by a crash: no owner
    const b = new IpamStore(dir, { cidr: '10.2.0.0/24' }).load();
    expect(b.allocations()).toEqual(new Map([['10.2.0.2', 'live'], ['10.2.0.3', 'leaked'], ['10.2.0.9', '']]));
    expect(await b.allocate('new')).toBe('10.2.0.10'); // resumes after the highest in use
    expect((await b.gc(['live', 'new'])).sort()).toEqual(['10.2.0.3', '10.2.0.9']);
    expect(fs.readdirSync(dir).sort()).toEqual(['10.2.0.10', '10.2.0.2']);
  });

  it('never gives one address to two processes allocating at once', async () => {
    const script = `
      const { IpamStore } = require(${JSON.stringify(path.resolve(__dirname, '..', 'dist', 'ipam.js'))});
      const ipam = new IpamStore(process.argv[1], { cidr: '10.3.0.0/24' }).load();
      (async () => { const out = []; for (let i = 0; i < 40; i++) out.push(await ipam.allocate(process.argv[2] + '-' + i)); console.log(JSON.stringify(out)); })();`;
    const run = (who: string): Promise<string[]> => new Promise((resolve, reject) =>
      execFile(process.execPath, ['-e', script, dir, who], (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout) as string[]))));
    const [x, y, z] = await Promise.all([run('x'), run('y'), run('z')]);
    const all = [...x!, ...y!, ...z!];
    expect(new Set(all).size).toBe(120);
    expect(fs.readdirSync(dir)).toHaveLength(120);
  });
});
