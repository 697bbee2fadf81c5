export { spec, anyEndpointHealthy } from './service';
export * from './v3';
export * from './v2';
export * from './recipes';
