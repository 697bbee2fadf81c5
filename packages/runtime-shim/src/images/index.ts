// The image side of runtime-shim: content store, image records, snapshots, import, pull, and the
// ImageService handlers. Containers use `ImageStore.find`, `lease`/`release` and
// `overlayOptions` to build their rootfs from an image's snapshots.
export { imageService, openImageStore, loadRegistryConfig, toApiImage, type ImageServiceOptions } from './service';
export { ImageStore, PLATFORM_ANNOTATION, type ImageRecord, type LayerRecord, type Progress, type ProgressFn } from './image-store';
export { ContentStore, ContentMismatchError } from './content-store';
export { SnapshotStore, type SnapshotInfo } from './snapshots';
export { importPath, importStream, type ImportOptions } from './import';
export { pullImage, type PullOptions, type PullResult, type RegistryAuth, type RegistryConfig } from './registry';
export { parseReference, formatReference, type Reference } from './reference';
export { applyLayer, DEFAULT_UNPACK_LIMITS, type UnpackLimits } from './unpack';
export { hostPlatform, parsePlatform, formatPlatform, type Platform } from './manifest';
