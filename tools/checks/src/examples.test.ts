// Every manifest under examples/ decodes strictly (unknown fields are errors), passes the
// Store's validation after defaulting, and round-trips through the object model unchanged.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyDefaults, encodeObject, parseManifests, validateObject } from '@berth/apimachinery';
import { describe, expect, it } from 'vitest';

const dir = path.resolve(__dirname, '..', '..', '..', 'examples');
const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();

describe('examples/', () => {
  it('has the manifests the README promises', () => {
    expect(files).toEqual(['bandwidth.yaml', 'batch.yaml', 'init-emptydir.yaml', 'placement.yaml', 'spread.yaml', 'udp-echo.yaml', 'web.yaml']);
  });

  it.each(files)('%s decodes strictly, validates and round-trips', (file) => {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    const objs = parseManifests(text, file);
    expect(objs.length).toBeGreaterThan(0);
    for (const obj of objs) {
      const again = parseManifests(JSON.stringify(encodeObject(obj)), file)[0];
      expect(again).toEqual(obj);
      applyDefaults(obj);
      expect(() => validateObject(obj)).not.toThrow();
    }
  });

  it('the strict decoder used above does reject a misspelt field', () => {
    const bad = fs.readFileSync(path.join(dir, 'batch.yaml'), 'utf8').replace('restartPolicy', 'restartPolicyy');
    expect(() => parseManifests(bad, 'batch.yaml')).toThrow(/restartPolicyy/);
  });
});
