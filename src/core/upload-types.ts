import type { Readable } from 'node:stream';
import type { Asset, FileVersion, Upload, UploadIntent } from './model.js';
import type { PresignedRequest } from './ports.js';

// What the upload service is given and answers (src/core/uploads.ts): its settings, the
// declarations and requests each flow hands it, and its outcomes. Kept apart so the HTTP routes
// and the other services name them without the service's own module.

export interface UploadSettings {
  /** Server-wide default; an account's own limit overrides it. */
  maxFileSize: number;
  /** How long a presigned URL (and its upload intent) stays valid. */
  uploadExpiresInSeconds: number;
  maxFilesPerRequest: number;
  /** After expiry, how long a pending upload whose bytes did arrive may still complete. */
  completionGraceMs: number;
  /**
   * When storage cannot attest a SHA-256 (most S3 servers), objects up to this size are
   * hashed during completion; larger ones with a declared SHA-256 become `verifying` assets
   * and a job hashes them, so a confirm call never waits minutes on a huge file.
   */
  inlineVerifyMaxBytes: number;
  /** The most pending uploads one key may have (its tokens' uploads count for the tokens). */
  maxOpenUploadsPerKey: number;
  /** The most pending uploads one upload token may have (a token may ask for fewer). */
  maxOpenUploadsPerToken: number;
  /**
   * The most upload bodies one account may stream through this process at once (see
   * UploadStreams); unlimited when absent.
   */
  maxUploadStreamsPerAccount?: number | undefined;
  /** The most upload bodies one upload token may stream at once; unlimited when absent. */
  maxUploadStreamsPerToken?: number | undefined;
  /** How long a direct upload's lease lasts from its last renewal (see DirectUploadLeases). */
  directUploadLeaseMs: number;
}

/**
 * What a kind of upload adds to the sweep. `reconcile` is asked, in place of a plain look at
 * the upload's key, whether a pending upload's object is there, and may put it there (parts
 * that were all sent but never composed, a tus file whose last byte arrived); it returns
 * true once it is. `expire` frees whatever else the kind keeps in storage. `debris` removes
 * what the kind keeps outside the blob store that `inUse` does not claim (a crash left it).
 */
export interface UploadKindHooks {
  reconcile?(upload: Upload): Promise<boolean>;
  expire?(upload: Upload): Promise<void>;
  debris?(olderThan: number, inUse: (key: string) => Promise<boolean>): Promise<number>;
}

/**
 * The job that frees what an upload ended outside the sweep left in storage (its revoked token's
 * pending uploads: see Store.revokeToken), as the sweep frees an expired one's: `{ uploadId }`.
 */
export const FREE_UPLOAD_JOB = 'free-upload';

/** A file as a client declares it before sending the bytes. Digests in hex or base64. */
export interface FileDeclaration {
  name: string;
  contentType?: string | undefined;
  size: number;
  sha256?: string | undefined;
  md5?: string | undefined;
  /** An id the client chose for this upload (unique in the account). */
  externalId?: string | undefined;
  intent?: UploadIntent | undefined;
}

/** Options for one batch of presigned uploads. */
export interface PresignOptions {
  /** Overrides the server's default validity (bounded by it and by a week). */
  expiresInSeconds?: number | undefined;
  /**
   * The URL requires only Content-Type (and Content-Length), for clients documented to send
   * nothing else. The declared digests still bind the upload: the embedded endpoint refuses
   * other bytes and completion re-verifies, but an S3 store checks neither digests nor
   * write-once on the PUT itself (see PresignPutRequest.contentTypeOnly).
   */
  contentTypeOnly?: boolean | undefined;
  /**
   * The request gave a list of files (even of one): a refusal names the file's index in it.
   * Unset, only a request of several files is taken for a list.
   */
  batch?: boolean | undefined;
}

/** A browser-form upload (POST policy) of a file whose exact size is not known in advance. */
export interface PostDeclaration {
  name: string;
  /** Bound into the policy when given: the form must send exactly this Content-Type field. */
  contentType?: string | undefined;
  /**
   * Without `contentType`: the file's type (application/octet-stream when not given), which
   * the form does not carry. Its policy names no Content-Type, so a client sends the fields as
   * given and nothing else; S3 fails any condition, even `starts-with ""`, on a field the form
   * leaves out, and forms such as FileSpin's are documented without one. Like a bound type it
   * is checked against a token's allowed types when the form is made.
   */
  impliedContentType?: string | undefined;
  /** Defaults to the account's file size limit. */
  maxSize?: number | undefined;
  externalId?: string | undefined;
  intent?: UploadIntent | undefined;
  expiresInSeconds?: number | undefined;
}

/** What a client asserts about the bytes when it confirms an upload. */
export interface CompletionClaims {
  /** Merged into the new asset's metadata (what the client reports about its upload). */
  metadata?: Record<string, unknown> | undefined;
  size?: number | undefined;
  /** Hex or base64. */
  sha256?: string | undefined;
  md5?: string | undefined;
}

export type IntentResult =
  | { status: 'pending'; upload: Upload; request: PresignedRequest }
  | { status: 'exists'; asset: Asset };

export interface UploadOutcome {
  asset: Asset;
  /** The content was already stored in this account; the existing asset is returned. */
  deduplicated: boolean;
  /** The version recorded, when the upload targeted a named file. */
  version?: FileVersion | undefined;
  /**
   * The caller's own upload, when `asset` is shown as that upload declared it (an isolated
   * caller's upload of content the account already held, see viewThrough). What is an
   * upload's own, such as its storage key, is to be told from this one: the asset's record
   * names the first uploader's.
   */
  through?: Upload | undefined;
}

export interface DirectUpload {
  name: string;
  contentType?: string | undefined;
  body: Readable;
  /** From Content-Length when the client sent one: lets an oversize body fail before it is read. */
  declaredSize?: number | undefined;
  expected?: { sha256?: string | undefined; md5?: string | undefined };
  /**
   * Digests the request declares after its body (HTTP trailer fields), hex: read once the body
   * has ended and checked as `expected` is, before anything is kept; what it throws refuses it.
   */
  trailing?: (() => { sha256?: string | undefined; md5?: string | undefined }) | undefined;
  /**
   * Runs once the bytes are stored and verified but before they become an asset; throwing
   * leaves nothing behind. (A form's later parts can only be read after the file part.)
   */
  beforeCommit?: () => Promise<void>;
  /**
   * What a failure while reading the body was, as its transport knows it (a form that broke
   * off is the client's malformed request, not a hang-up): recorded and thrown as returned.
   */
  explain?: ((err: unknown) => unknown) | undefined;
  intent?: UploadIntent | undefined;
}

export interface ReceivedObject {
  key: string;
  contentType: string;
  size: number;
  body: Readable;
  /** Digests the client bound into the request (Content-MD5, x-amz-checksum-sha256), hex. */
  expected: { md5?: string | undefined; sha256?: string | undefined };
  /** When the request began: see ReceivedPost.startedAt. */
  startedAt: number;
}

/** A file arriving in a POST Object form whose policy the endpoint has verified. */
export interface ReceivedPost {
  key: string;
  /** The form's Content-Type field, if it sent one. */
  contentType: string | undefined;
  body: Readable;
  minSize: number;
  maxSize: number;
  /**
   * When the request began. The intent's expiry is judged then, as S3 judges a presigned URL's:
   * a body that began in time is taken whole, however long the link takes to deliver it.
   */
  startedAt: number;
}
