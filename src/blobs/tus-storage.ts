import type { Readable } from 'node:stream';
import { type DataStore, Upload } from '@tus/utils';
import type { ResumableStorage } from '../core/resumable.js';

/**
 * What tus.io's server is given: the datastore (tus ids are Wharf storage keys) and the same
 * bytes seen as the core's ResumableStorage.
 */
export interface TusBackend {
  datastore: DataStore;
  storage: ResumableStorage;
  /** Where the tus routes hand request bodies straight to the datastore (local files only). */
  bodies?: BodyChannel | undefined;
}

/**
 * Request bodies that go to the datastore as the Node streams they are. tus.io's server takes
 * a WHATWG Request and turns its body back into a Node stream: two adapters, a promise and
 * copies per chunk, which cost more main-thread time than hashing the bytes. The tus routes
 * offer a body here under the upload's key, hand tus.io's server the same request without
 * one (headers intact, so it checks offset and length as usual), and the datastore's write
 * takes the body from here instead of the empty one it is given.
 */
export class BodyChannel {
  private readonly bodies = new Map<string, { body: Readable; limit: number }>();

  /**
   * Offers `body` (at most `limit` bytes, as tus.io's limiter would allow) for the next write
   * of `key`; the returned function withdraws it and says whether a write took it.
   */
  offer(key: string, body: Readable, limit: number): () => boolean {
    const entry = { body, limit };
    this.bodies.set(key, entry);
    return () => {
      const left = this.bodies.get(key) === entry;
      if (left) this.bodies.delete(key);
      return !left;
    };
  }

  take(key: string): { body: Readable; limit: number } | undefined {
    const entry = this.bodies.get(key);
    this.bodies.delete(key);
    return entry;
  }
}

/**
 * What Wharf's tus endpoint offers. `checksum` is Wharf's own (the tus server has none);
 * `creation-defer-length` is left out: an upload's size is checked against the account's
 * limit and quota when it is opened, so it must be known then.
 */
export const TUS_EXTENSIONS = ['creation', 'creation-with-upload', 'termination', 'expiration', 'checksum'];

/**
 * Embedded: partial files live in their own directory (never under the blob store's objects/),
 * and a finished one is renamed into the blob store, so no object is ever partial.

/**
 * A finished upload's bytes are an object and its tus records are gone; tus.io's server still
 * asks after it within the request that finished it, and must see it whole.
 */
export function finishedUpload(id: string, size: number): Upload {
  return new Upload({ id, size, offset: size });
}
