export { spec, schedulerImplementation, disconnectedWriter } from './service';
export { Scheduler, type SchedulerOptions } from './scheduler';
export { SchedulerCache } from './cache';
export { SchedulingQueue } from './queue';
export { MemoryCluster, type ClusterSource, type ClusterWriter, type ClusterEventHandler } from './cluster';
export { resolveConfig, loadConfigFile, type SchedulerConfig } from './config';
export { explain } from './explain';
export { PodInfo, NodeInfo } from './framework/types';
export { numFeasibleNodesToFind, FitError, schedulePod } from './framework/schedule';
