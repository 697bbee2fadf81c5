// IpamStore on a real directory: round-robin, reserved addresses, exhaustion, restart,
// processes taking turns on the directory, a torn journal, the older file-per-address layout,
// and GC.
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
    const ipam = await new IpamStore(dir, { cidr: '10.1.0.0/29', reserved: ['10.1.0.3'] }).load();
    expect(ipam.gateway).toBe('10.1.0.1');
    expect(await ipam.allocate('a')).toBe('10.1.0.2');
    expect(await ipam.allocate('a')).toBe('10.1.0.2'); // idempotent per owner
    expect(await ipam.allocate('b')).toBe('10.1.0.4');
    expect(await ipam.release('a')).toEqual(['10.1.0.2']);
    expect(await ipam.allocate('c')).toBe('10.1.0.5');
    expect(await ipam.allocate('d')).toBe('10.1.0.6');
    expect(await ipam.allocate('e')).toBe('10.1.0.2'); // wrapped around
    await expect(ipam.allocate('f')).rejects.toThrow(/podCidr 10.1.0.0\/29: no free address left/);
    ipam.close();
  });

  it('allocates IPv6 from a /64 without walking it, and keeps the claims across a restart', async () => {
    const ipam = await new IpamStore(dir, { cidr: 'fd00:77::/64', field: 'podCidrV6' }).load();
    expect(ipam.gateway).toBe('fd00:77::1');
    expect(await ipam.allocate('a')).toBe('fd00:77::2');
    expect(await ipam.allocate('b')).toBe('fd00:77::3');
    // Another store on the directory is refused while this one holds it, naming the holder.
    await expect(new IpamStore(dir, { cidr: 'fd00:77::/64', field: 'podCidrV6' }).load()).rejects.toThrow(new RegExp(`ipv6.journal is in use by another process \\(pid ${process.pid}\\)`));
    ipam.close();
    const again = await new IpamStore(dir, { cidr: 'fd00:77::/64', field: 'podCidrV6' }).load();
    expect(await again.allocate('c')).toBe('fd00:77::4');
    again.close();
    expect(() => new IpamStore(dir, { cidr: 'fd00::/127', field: 'podCidrV6' })).toThrow(/podCidrV6: fd00::\/127 is too small/);
    // The IPv4 store of the same directory keeps its own journal.
    const v4 = await new IpamStore(dir, { cidr: '10.9.0.0/24' }).load();
    expect(v4.allocations().size).toBe(0);
    v4.close();
  });

  it('rejects malformed or unusable CIDRs naming the field', () => {
    expect(() => new IpamStore(dir, { cidr: '10.1.0.0/33' })).toThrow(/podCidr: expected an IPv4 CIDR/);
    expect(() => new IpamStore(dir, { cidr: 'banana' })).toThrow(/podCidr/);
    expect(() => new IpamStore(dir, { cidr: '10.1.0.0/31' })).toThrow(/too small/);
    expect(() => new IpamStore(dir, { cidr: '10.1.0.0/24', gateway: '10.2.0.1' })).toThrow(/gateway: 10.2.0.1 is not inside 10.1.0.0\/24/);
  });

  it('keeps allocations across a restart, cuts a torn last entry, and garbage-collects leaked ones', async () => {
    const a = await new IpamStore(dir, { cidr: '10.2.0.0/24' }).load();
    await a.allocate('live');
    await a.allocate('leaked');
    await a.allocate('gone');
    await a.release('gone');
    a.close();
    // A crash in the middle of a write leaves half a line: it is cut, the rest stands.
    fs.appendFileSync(path.join(dir, 'ipv4.journal'), '{"a":"10.2.0.7","o":"to');
    const b = await new IpamStore(dir, { cidr: '10.2.0.0/24' }).load();
    expect(b.allocations()).toEqual(new Map([['10.2.0.2', 'live'], ['10.2.0.3', 'leaked']]));
    expect(await b.allocate('new')).toBe('10.2.0.4'); // resumes after the highest in use
    expect((await b.gc(['live', 'new'])).sort()).toEqual(['10.2.0.3']);
    b.close();
    const c = await new IpamStore(dir, { cidr: '10.2.0.0/24' }).load();
    expect(c.allocations()).toEqual(new Map([['10.2.0.2', 'live'], ['10.2.0.4', 'new']]));
    c.close();
  });

  it('takes over the claim files of the earlier one-file-per-address layout', async () => {
    fs.writeFileSync(path.join(dir, '10.4.0.5'), 'old-pod');
    fs.writeFileSync(path.join(dir, '10.4.0.9'), ''); // a claim torn by a crash: no owner
    const s = await new IpamStore(dir, { cidr: '10.4.0.0/24' }).load();
    expect(s.allocations()).toEqual(new Map([['10.4.0.5', 'old-pod'], ['10.4.0.9', '']]));
    expect(fs.readdirSync(dir).sort()).toEqual(['ipv4.journal', 'ipv4.journal.lock']);
    expect(await s.allocate('next')).toBe('10.4.0.10');
    expect(await s.gc(['old-pod', 'next'])).toEqual(['10.4.0.9']);
    s.close();
  });

  it('compacts its journal once it is mostly history', async () => {
    const s = await new IpamStore(dir, { cidr: '10.5.0.0/24' }).load();
    await s.allocate('keep');
    for (let i = 0; i < 300; i++) {
      await s.allocate(`p${i}`);
      await s.release(`p${i}`);
    }
    const lines = fs.readFileSync(path.join(dir, 'ipv4.journal'), 'utf8').trim().split('\n');
    expect(lines.length).toBeLessThan(256);
    s.close();
    expect((await new IpamStore(dir, { cidr: '10.5.0.0/24' }).load()).allocations()).toEqual(new Map([['10.5.0.2', 'keep']]));
  });

  it('never gives one address to two processes started at once: they take turns on the lock', async () => {
    const script = `
      const { IpamStore } = require(${JSON.stringify(path.resolve(__dirname, '..', 'dist', 'ipam.js'))});
      (async () => {
        const ipam = await new IpamStore(process.argv[1], { cidr: '10.3.0.0/24' }).load({ waitMs: 20000 });
        const out = []; for (let i = 0; i < 40; i++) out.push(await ipam.allocate(process.argv[2] + '-' + i));
        ipam.close(); console.log(JSON.stringify(out));
      })();`;
    const run = (who: string): Promise<string[]> => new Promise((resolve, reject) =>
      execFile(process.execPath, ['-e', script, dir, who], (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout) as string[]))));
    const [x, y, z] = await Promise.all([run('x'), run('y'), run('z')]);
    const all = [...x!, ...y!, ...z!];
    expect(new Set(all).size).toBe(120);
    const s = await new IpamStore(dir, { cidr: '10.3.0.0/24' }).load();
    expect(s.allocations().size).toBe(120);
    s.close();
  });
});
