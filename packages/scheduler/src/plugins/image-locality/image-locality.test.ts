import { describe, expect, it } from 'vitest';
import { scoreRow, type Row } from '../../testing/harness';
import { node, pod } from '../../testing/builders';

const MB = 1024 * 1024;

describe('ImageLocality score', () => {
  it.each<{ name: string } & Row & { want: Record<string, number> }>([
    {
      name: 'a large image on one of two nodes, scaled by its spread',
      pod: pod('p', { images: ['gcr.io/250'] }),
      nodes: [node('n1', { images: [{ names: ['gcr.io/250:latest'], size: 250 * MB }] }), node('n2')],
      // 250MB * 1/2 = 125MB -> 100 * (125-23) / (1000-23) = 10
      want: { n1: 10, n2: 0 },
    },
    {
      name: 'the same image everywhere counts fully',
      pod: pod('p', { images: ['gcr.io/250:v1'] }),
      nodes: [node('n1', { images: [{ names: ['gcr.io/250:v1'], size: 250 * MB }] }), node('n2', { images: [{ names: ['gcr.io/250:v1'], size: 250 * MB }] })],
      want: { n1: 23, n2: 23 },
    },
    {
      name: 'images below the 23MB threshold score 0',
      pod: pod('p', { images: ['small'] }),
      nodes: [node('n1', { images: [{ names: ['small:latest'], size: 10 * MB }] })],
      want: { n1: 0 },
    },
    {
      name: 'two containers double the upper threshold',
      pod: pod('p', { containers: [{}, {}], images: ['a', 'b'] }),
      nodes: [node('n1', { images: [{ names: ['a:latest'], size: 2000 * MB }, { names: ['b:latest'], size: 2000 * MB }] })],
      want: { n1: 100 },
    },
  ])('$name', (row) => {
    expect(scoreRow('ImageLocality', row)).toEqual(row.want);
  });
});
