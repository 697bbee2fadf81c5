export { spec, anyEndpointHealthy } from './service';
export * from './v3';
