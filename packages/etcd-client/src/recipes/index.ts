export { EtcdV3Election, EtcdV3Mutex, leaderOf, observeLeader, type V3ElectionOptions } from './v3-election';
export { EtcdV2Election, EtcdV2Mutex, v2LeaderOf, type V2ElectionOptions } from './v2-election';
export { ElectionMutex, type Candidate } from './mutex';
