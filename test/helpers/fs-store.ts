import { FsBlobStore } from '../../src/blobs/fs-store.js';
import { LocalEndpoint } from '../../src/blobs/local-endpoint.js';

/**
 * A local blob store at `root`, ready for use, for tests that drive storage directly. Its
 * presigner is never asked for a URL that a client would follow, so its endpoint is a dummy.
 */
export async function localBlobStore(root: string): Promise<FsBlobStore> {
  const store = new FsBlobStore(
    root,
    new LocalEndpoint({
      publicUrl: 'http://127.0.0.1:1',
      bucket: 'wharf',
      region: 'us-east-1',
      accessKeyId: 'k',
      secretAccessKey: 's',
    }),
  );
  await store.init();
  return store;
}
