import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { DecodeError, decodeObject, encodeObject, parseManifests } from './codec';

const fixture = (f: string) => fs.readFileSync(path.join(__dirname, 'testdata', f), 'utf8');
const POD_FIXTURES = ['pod-resources.yaml', 'pod-probes.yaml', 'pod-affinity.yaml', 'pod-tolerations.yaml'];

describe('manifest codec', () => {
  it.each(POD_FIXTURES)('%s decodes and encodes back to the same manifest', (f) => {
    const text = fixture(f);
    const [obj] = parseManifests(text, f);
    expect(obj.pod).toBeDefined();
    expect(encodeObject(obj)).toEqual(parseYaml(text));
  });

  it('reads IntOrString from a bare number or a name', () => {
    const [obj] = parseManifests(fixture('pod-probes.yaml'));
    const c = obj.pod!.spec!.containers[0];
    expect(c.readinessProbe!.httpGet!.port).toEqual({ intValue: undefined, stringValue: 'liveness-port' });
    expect(c.startupProbe!.tcpSocket!.port).toEqual({ intValue: 8080, stringValue: undefined });
  });

  it('splits multi-document YAML, skips empty documents, decodes bytes as base64', () => {
    const objs = parseManifests(fixture('app-bundle.yaml'));
    expect(objs.map((o) => Object.keys(o).find((k) => (o as Record<string, unknown>)[k]))).toEqual(['namespace', 'configMap', 'secret']);
    expect(Buffer.from(objs[2].secret!.data['.secret-file']).toString()).toBe('value-2\r\n\r\n');
    expect(encodeObject(objs[2])).toEqual({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'dotfile-secret', namespace: 'shop' }, data: { '.secret-file': 'dmFsdWUtMg0KDQo=' } });
  });

  it('reads JSON and kind: List', () => {
    const list = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' } }, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'b' } }] });
    expect(parseManifests(list).map((o) => o.configMap!.metadata!.name)).toEqual(['a', 'b']);
  });

  it('keeps an empty message that selects a variant (emptyDir: {})', () => {
    const m = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { volumes: [{ name: 'cache', emptyDir: {} }], containers: [{ name: 'c', image: 'busybox' }] } };
    expect(encodeObject(decodeObject(m))).toEqual(m);
  });

  const bad: { name: string; manifest: string; error: RegExp; field: string }[] = [
    { name: 'unknown field deep in a container', manifest: 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    imagePullPolcy: Always\n', field: 'spec.containers[0].imagePullPolcy', error: /spec\.containers\[0\]\.imagePullPolcy: unknown field "imagePullPolcy"/ },
    { name: 'unknown top-level field', manifest: 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspek: {}\n', field: 'spek', error: /spek: unknown field "spek"/ },
    { name: 'wrong type', manifest: 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    ports: [{containerPort: "http"}]\n', field: 'spec.containers[0].ports[0].containerPort', error: /expected an integer, got string "http"/ },
    { name: 'int32 overflow', manifest: 'apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    ports: [{containerPort: 99999999999}]\n', field: 'spec.containers[0].ports[0].containerPort', error: /out of range/ },
    { name: 'unknown kind', manifest: 'apiVersion: v1\nkind: Potato\nmetadata: {name: p}\n', field: 'kind', error: /no kind "Potato" is registered/ },
    { name: 'wrong apiVersion', manifest: 'apiVersion: apps/v1\nkind: Pod\nmetadata: {name: p}\n', field: 'apiVersion', error: /kind Pod is served as "v1"/ },
    { name: 'missing kind', manifest: 'apiVersion: v1\nmetadata: {name: p}\n', field: 'kind', error: /kind: Required value/ },
    { name: 'label value not a string', manifest: 'apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {a: {b: c}}}\n', field: 'metadata.labels["a"]', error: /expected a string, got object/ },
    { name: 'bad base64', manifest: 'apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {k: "not base64!"}\n', field: 'data["k"]', error: /base64/ },
  ];
  it.each(bad)('rejects $name with the field path', ({ manifest, error, field }) => {
    let err: unknown;
    try { parseManifests(manifest, 'x.yaml'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).field).toBe(field);
    expect((err as Error).message).toMatch(error);
    expect((err as Error).message.startsWith('x.yaml: ')).toBe(true);
  });

  it('rejects malformed YAML and duplicate keys with a position', () => {
    expect(() => parseManifests('apiVersion: v1\nkind: [Pod\n')).toThrow(/malformed YAML at line \d+, column \d+/);
    expect(() => parseManifests('apiVersion: v1\nkind: Pod\nkind: Pod\n')).toThrow(/malformed YAML.*[Mm]ap keys must be unique/);
  });

  it('names the document of a multi-document error', () => {
    expect(() => parseManifests('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\nbogus: 1\n', 'f.yaml')).toThrow('f.yaml (document 2): bogus: unknown field "bogus"');
  });
});
