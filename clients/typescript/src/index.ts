// profile-image-client: a typed TypeScript client for the profile-image gRPC service.

export {
  type ClientOptions,
  type Crop,
  DEFAULT_URL,
  type Format,
  isComplete,
  MAX_CHUNK_BYTES,
  ProfileImageClient,
  type UploadOptions,
  type UploadSource,
  type WatchOptions,
} from "./client.js";
export { type FieldViolation, ProfileImageError, type QuotaViolation } from "./errors.js";
export * from "./gen/profileimage/v1/profile_image_pb.js";
export * as errorDetails from "./gen/google/rpc/error_details_pb.js";
