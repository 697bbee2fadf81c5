export { spec, anyEndpointHealthy } from './service';
