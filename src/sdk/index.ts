/**
 * Wharf's SDK: a typed client of the native API, on fetch (Node 18+, browsers, Deno, Bun), with
 * upload helpers that choose the flow by size, hash while reading, report progress, retry and
 * resume. It imports nothing of the server's: an app imports this and nothing else. Node
 * programs import `sdk/node.js` instead, for files on disk and native hashing.
 */
export {
  AccountApi,
  AssetsApi,
  type ClientOptions,
  type Download,
  type DownloadOptions,
  EventsApi,
  FilesApi,
  KeysApi,
  type ListAssetsQuery,
  type ListUploadsQuery,
  MultipartApi,
  UploadsApi,
  UploadTokensApi,
  WebhooksApi,
  Wharf,
} from './client.js';
export { type ClientErrorCode, isWharfError, WharfApiError, WharfError } from './errors.js';
export { type Hasher, type HasherFactory, portableSha256 } from './hash.js';
export type { BodyFactory, RetryOptions, TransportOptions } from './http.js';
export { placeholderDataUrl } from './placeholder.js';
export type { ProgressListener, UploadPhase, UploadProgress } from './progress.js';
export {
  blobSource,
  bytesSource,
  streamSource,
  type UploadInput,
  type UploadSource,
} from './sources.js';
export { type TusAppended, TusClient, type TusState } from './tus.js';
export type * from './types.js';
export {
  chooseStrategy,
  DEFAULT_THRESHOLDS,
  MemoryResumeStore,
  type ResumeRecord,
  type ResumeStore,
  type UploadOptions,
  type UploadResult,
  type UploadStrategy,
} from './upload.js';
