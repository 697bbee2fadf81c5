export { spec } from './service';
