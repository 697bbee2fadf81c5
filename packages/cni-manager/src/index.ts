export { spec, networkService, DEFAULT_POD_CIDR } from './service';
export { PodNetwork, hostVethName, bandwidthOf, ROUTED_GATEWAY, type PodNetworkConfig, type AttachmentRecord, type SetUpRequest, type SetUpResult } from './network';
export { IpamStore } from './ipam';
