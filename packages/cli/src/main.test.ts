import { describe, expect, it, vi } from 'vitest';
import { main } from './main';

describe('berth main', () => {
  it('rejects an unknown command in kubectl style', async () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['frobnicate'])).toBe(1);
      expect(err).toHaveBeenCalledWith('error: unknown command "frobnicate" for "berth"\nRun \'berth help\' for usage.\n');
    } finally {
      err.mockRestore();
    }
  });
  it('prints help', async () => {
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      expect(await main(['help'])).toBe(0);
      expect(String(out.mock.calls[0][0])).toMatch(/berth up\s+bring up a local cluster/);
    } finally {
      out.mockRestore();
    }
  });
});
