export { spec } from './service';
export * from './clock';
export * from './qos';
export * from './cgroups/plan';
export * from './cgroups/manager';
