export { spec } from './service';
export * from './clock';
export * from './qos';
export * from './cgroups/plan';
export * from './cgroups/manager';
export * from './backoff';
export * from './pod-actions';
export * from './probes/prober';
export * from './probes/manager';
