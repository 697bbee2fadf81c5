export * from './kinds';
export * from './codec';
export * from './quantity';
export * from './names';
export * from './selectors';
export * from './validation';
export * from './defaults';
