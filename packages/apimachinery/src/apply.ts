// Client-side apply (kubectl apply without --server-side): a three-way strategic merge of the
// last applied manifest (the kubectl.kubernetes.io/last-applied-configuration annotation), the
// new manifest and the live object.
//   - a field the new manifest sets is written (even over someone else's change, as kubectl);
//   - a field the last manifest set and the new one drops is removed;
//   - a field neither manifest mentions (server defaults, admission, other writers) is kept.
// Lists of objects with a merge key (containers by name, env by name, ports by containerPort,
// volumeMounts by mountPath, ...) are merged item by item like Kubernetes' strategic merge
// patch; finalizers merge as a set; every other list is replaced whole when the manifest
// changed it since it was last applied (JSON merge patch), and left as it is live otherwise.
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/** The patchMergeKey of Kubernetes' core/v1 (and meta/v1) list fields, by field name. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  env: 'name',
  ports: 'containerPort',
  volumes: 'name',
  volumeMounts: 'mountPath',
  volumeDevices: 'devicePath',
  imagePullSecrets: 'name',
  hostAliases: 'ip',
  topologySpreadConstraints: 'topologyKey',
  resourceClaims: 'name',
  ownerReferences: 'uid',
  taints: 'key',
  conditions: 'type',
};
/** Lists of scalars merged as sets (patchStrategy "merge" without a key). */
const SET_LISTS = new Set(['finalizers']);

const isObj = (v: Json | undefined): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);
const same = (a: Json | undefined, b: Json | undefined) => JSON.stringify(a) === JSON.stringify(b);

/** The merged object: `original` = last applied, `modified` = the new manifest, `live` = the stored object. */
export function threeWayMerge(original: Json | undefined, modified: Json, live: Json | undefined): Json {
  return mergeValue(original, modified, live, '');
}

function mergeValue(original: Json | undefined, modified: Json, live: Json | undefined, field: string): Json {
  if (isObj(modified)) return mergeObject(isObj(original) ? original : undefined, modified, isObj(live) ? live : undefined);
  if (Array.isArray(modified)) {
    const key = MERGE_KEYS[field];
    if (key && modified.every((x) => isObj(x) && x[key] !== undefined)) return mergeKeyedList(key, Array.isArray(original) ? original : [], modified, Array.isArray(live) ? live : []);
    if (SET_LISTS.has(field) && modified.every((x) => typeof x === 'string')) return mergeSet(Array.isArray(original) ? original : [], modified, Array.isArray(live) ? live : []);
    // A list without a key that the manifest did not change since it was last applied stays as
    // it is live: the server may have extended it (admission appends the not-ready/unreachable
    // tolerations, and Kubernetes forbids taking them away again).
    if (original !== undefined && live !== undefined && same(original, modified)) return live;
  }
  return modified;
}

function mergeObject(original: JsonObject | undefined, modified: JsonObject, live: JsonObject | undefined): JsonObject {
  const out: JsonObject = { ...(live ?? {}) };
  for (const k of Object.keys(original ?? {})) if (!(k in modified)) delete out[k];
  for (const [k, v] of Object.entries(modified)) out[k] = mergeValue(original?.[k], v, live?.[k], k);
  return out;
}

function mergeKeyedList(key: string, original: Json[], modified: Json[], live: Json[]): Json[] {
  const id = (x: Json) => JSON.stringify((x as JsonObject)[key]);
  const mine = new Set(modified.map(id));
  const dropped = new Set(original.filter((x) => isObj(x) && !mine.has(id(x))).map(id));
  const byId = (list: Json[]) => new Map(list.filter(isObj).map((x) => [id(x), x] as const));
  const liveById = byId(live);
  const origById = byId(original);
  // The manifest's items in its order (each merged with its live twin), then the items only the
  // server or other writers added.
  const out = modified.map((m) => mergeObject(origById.get(id(m)) as JsonObject | undefined, m as JsonObject, liveById.get(id(m)) as JsonObject | undefined));
  for (const l of live) if (isObj(l) && !mine.has(id(l)) && !dropped.has(id(l))) out.push(l);
  return out;
}

function mergeSet(original: Json[], modified: Json[], live: Json[]): Json[] {
  const out = [...modified];
  for (const l of live) if (!out.some((x) => same(x, l)) && !original.some((x) => same(x, l))) out.push(l);
  return out;
}
