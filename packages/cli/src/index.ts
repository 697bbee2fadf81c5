export { main } from './main';
export { up, status } from './up';
export { SERVICES, serviceBin } from './services';
