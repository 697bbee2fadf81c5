// Field selectors each resource supports, and the values of those fields on an object.
import type { core } from '@berth/api';
import type { KindInfo } from '@berth/apimachinery';

const COMMON = ['metadata.name', 'metadata.namespace'];
export const SELECTABLE_FIELDS: Record<string, string[]> = {
  pods: [...COMMON, 'spec.nodeName', 'spec.schedulerName', 'spec.serviceAccountName', 'spec.hostNetwork', 'status.phase', 'status.podIP', 'status.nominatedNodeName'],
  nodes: [...COMMON, 'spec.unschedulable'],
  events: [...COMMON, 'involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid', 'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath', 'reason', 'reportingComponent', 'source', 'type'],
  namespaces: [...COMMON, 'status.phase'],
  secrets: [...COMMON, 'type'],
};

export function selectableFields(info: KindInfo): string[] {
  return SELECTABLE_FIELDS[info.resource] ?? COMMON;
}

export function fieldsOf(obj: core.Object, meta: core.ObjectMeta): Record<string, string> {
  const f: Record<string, string> = { 'metadata.name': meta.name, 'metadata.namespace': meta.namespace };
  if (obj.pod) {
    const s = obj.pod.spec;
    const st = obj.pod.status;
    Object.assign(f, {
      'spec.nodeName': s?.nodeName ?? '',
      'spec.schedulerName': s?.schedulerName ?? '',
      'spec.serviceAccountName': s?.serviceAccountName ?? '',
      'spec.hostNetwork': String(!!s?.hostNetwork),
      'status.phase': st?.phase ?? '',
      'status.podIP': st?.podIP ?? '',
      'status.nominatedNodeName': st?.nominatedNodeName ?? '',
    });
  } else if (obj.node) {
    f['spec.unschedulable'] = String(!!obj.node.spec?.unschedulable);
  } else if (obj.event) {
    const io = obj.event.involvedObject;
    Object.assign(f, {
      'involvedObject.kind': io?.kind ?? '',
      'involvedObject.namespace': io?.namespace ?? '',
      'involvedObject.name': io?.name ?? '',
      'involvedObject.uid': io?.uid ?? '',
      'involvedObject.apiVersion': io?.apiVersion ?? '',
      'involvedObject.resourceVersion': io?.resourceVersion ?? '',
      'involvedObject.fieldPath': io?.fieldPath ?? '',
      reason: obj.event.reason,
      reportingComponent: obj.event.reportingComponent,
      source: obj.event.source?.component ?? '',
      type: obj.event.type,
    });
  } else if (obj.namespace) {
    f['status.phase'] = obj.namespace.status?.phase ?? '';
  } else if (obj.secret) {
    f.type = obj.secret.type;
  }
  return f;
}
