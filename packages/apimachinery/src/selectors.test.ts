import { describe, expect, it } from 'vitest';
import { SelectorError, labelSelectorFromProto, parseFieldSelector, parseLabelSelector } from './selectors';

const labels = { app: 'web', tier: 'frontend', env: 'prod' };

describe('label selectors', () => {
  it.each([
    ['', true],
    ['app=web', true],
    ['app==web', true],
    ['app=db', false],
    ['app!=db', true],
    ['missing!=x', true],
    ['tier in (frontend,backend)', true],
    ['tier in (backend)', false],
    ['tier notin (backend, cache)', true],
    ['missing notin (a)', true],
    ['env', true],
    ['missing', false],
    ['!missing', true],
    ['!env', false],
    ['app=web,tier in (frontend),!canary', true],
    ['app=web,tier=backend', false],
    ['app = web , env', true],
  ])('%j matches: %s', (sel, want) => {
    expect(parseLabelSelector(sel).matches(labels)).toBe(want);
  });

  it.each([
    ['app=web,', /empty requirement/],
    ['tier in (a', /unbalanced "\("/],
    ['tier in ()', /in requires at least one value/],
    ['-bad=x', /key "-bad"/],
    ['app=bad value', /cannot parse requirement/],
    ['app=' + 'x'.repeat(64), /must be no more than 63 characters/],
    ['a==b==c', /cannot parse requirement/],
  ])('rejects %j', (sel, err) => {
    expect(() => parseLabelSelector(sel)).toThrow(SelectorError);
    expect(() => parseLabelSelector(sel)).toThrow(err);
  });

  it('reads metav1.LabelSelector: empty selects all, absent selects nothing', () => {
    expect(labelSelectorFromProto({ matchLabels: {}, matchExpressions: [] })!.matches(labels)).toBe(true);
    expect(labelSelectorFromProto(undefined)).toBeNull();
    const s = labelSelectorFromProto({ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] })!;
    expect(s.matches(labels)).toBe(true);
    expect(s.matches({ app: 'web', env: 'dev' })).toBe(false);
    expect(() => labelSelectorFromProto({ matchLabels: {}, matchExpressions: [{ key: 'a', operator: 'Near', values: [] }] })).toThrow(/Unsupported value: "Near"/);
  });
});

describe('field selectors', () => {
  const allowed = ['metadata.name', 'metadata.namespace', 'spec.nodeName', 'status.phase'];
  it('matches = and !=', () => {
    const f = parseFieldSelector('spec.nodeName=node-1,status.phase!=Succeeded', allowed);
    expect(f.matches({ 'spec.nodeName': 'node-1', 'status.phase': 'Running' })).toBe(true);
    expect(f.matches({ 'spec.nodeName': 'node-1', 'status.phase': 'Succeeded' })).toBe(false);
    expect(f.matches({ 'spec.nodeName': 'node-2', 'status.phase': 'Running' })).toBe(false);
    expect(f.exact('spec.nodeName')).toBe('node-1');
    expect(parseFieldSelector('spec.nodeName=', allowed).matches({ 'spec.nodeName': '' })).toBe(true);
  });
  it('refuses unsupported fields and bad syntax', () => {
    expect(() => parseFieldSelector('spec.hostname=x', allowed)).toThrow(/field label not supported: spec.hostname/);
    expect(() => parseFieldSelector('spec.nodeName', allowed)).toThrow(/invalid field selector requirement/);
  });
});
