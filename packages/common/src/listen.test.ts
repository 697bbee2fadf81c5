import { describe, expect, it } from 'vitest';
import { parseListen } from './listen';

describe('parseListen', () => {
  it.each([
    ['unix:///run/berth/x.sock', { kind: 'unix', path: '/run/berth/x.sock' }],
    ['/run/berth/x.sock', { kind: 'unix', path: '/run/berth/x.sock' }],
    ['127.0.0.1:7443', { kind: 'tcp', host: '127.0.0.1', port: 7443 }],
    ['[::1]:0', { kind: 'tcp', host: '::1', port: 0 }],
  ])('%s', (v, want) => expect(parseListen(v)).toMatchObject(want));
  it.each(['unix://rel.sock', 'localhost', ':80', '1.2.3.4:99999', `unix:///${'x'.repeat(120)}`])('rejects %s', (v) => {
    expect(() => parseListen(v)).toThrow(/^listen: /);
  });
});
