export * from './types';
export * from './rbac';
export * from './node';
export * from './policy';
export * from './authorizer';
export * from './authn';
