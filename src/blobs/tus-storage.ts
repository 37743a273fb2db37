import { AsyncLocalStorage } from 'node:async_hooks';
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
  /** Removes what this process kept on disk for it (S3: its parts directory), once no upload runs. */
  close?(): Promise<void>;
}

/** One request's body, offered to the datastore's write of its upload (see BodyChannel). */
export interface BodyOffer {
  body: Readable;
  /** At most this many bytes are taken (what tus.io's limiter would allow). */
  limit: number;
  /** The upload's storage key; a creation names it once the upload exists. */
  key: string | undefined;
  /** Set by the write that took the body. */
  taken: boolean;
  /** Set by that write when the body went on past `limit` (refused: tus.io's 413). */
  overflowed?: boolean;
}

/**
 * Request bodies that go to the datastore as the Node streams they are. tus.io's server takes
 * a WHATWG Request and turns its body back into a Node stream: two adapters, a promise and
 * copies per chunk, which cost more main-thread time than hashing the bytes. The tus routes
 * hand tus.io's server the request without its body (headers intact, so it checks offset and
 * length as usual) and run its handling inside `run`; the datastore's write takes the body
 * from there instead of the empty one it is given.
 *
 * The offer lives in the request's own async context, not in a table by upload: two PATCHes
 * of one upload at once (a client's retry racing its next PATCH) each offer a body, and only
 * the write tus.io's server makes for a request can take that request's body. Keyed by upload,
 * the second offer replaced the first, and the PATCH that passed the offset check wrote the
 * other one's bytes.
 */
export class BodyChannel {
  private readonly requests = new AsyncLocalStorage<BodyOffer>();

  /** Handles one request (`handle`: tus.io's server) with `offer` as its body. */
  run<T>(offer: BodyOffer, handle: () => Promise<T>): Promise<T> {
    return this.requests.run(offer, handle);
  }

  /** The body of the request being handled, if it is for `key` and no write has taken it. */
  take(key: string): BodyOffer | undefined {
    const offer = this.requests.getStore();
    if (offer === undefined || offer.taken || offer.key !== key) return undefined;
    offer.taken = true;
    return offer;
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

/**
 * Uploads this node promoted lately, by key, with their sizes. tus.io's server looks at an
 * upload once more after it finished it (a creation's answer reads its expiry), and by then a
 * deduplicated upload has neither its tus records nor an object at its own key: completion
 * kept the account's existing object and freed this one. The backends' getUpload answers such
 * an upload from here. Bounded: only the rest of the finishing request needs it.
 */
export class RecentlyFinished {
  private readonly sizes = new Map<string, number>();

  add(key: string, size: number): void {
    this.sizes.delete(key);
    this.sizes.set(key, size);
    if (this.sizes.size > 1024) this.sizes.delete(this.sizes.keys().next().value!);
  }

  upload(key: string): Upload | undefined {
    const size = this.sizes.get(key);
    return size === undefined ? undefined : finishedUpload(key, size);
  }
}
