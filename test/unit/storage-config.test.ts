import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.js';

const S3 = {
  WHARF_STORAGE: 's3',
  WHARF_S3_BUCKET: 'wharf-assets',
  WHARF_S3_ACCESS_KEY_ID: 'AKID',
  WHARF_S3_SECRET_ACCESS_KEY: 'secret',
};

function refused(env: Record<string, string>, message: RegExp) {
  assert.throws(
    () => loadConfig(env),
    (err: unknown) => err instanceof ConfigError && message.test(err.message),
  );
}

describe('storage configuration', () => {
  test('local storage is the default', () => {
    assert.deepEqual(loadConfig({}).storage, { kind: 'local' });
    assert.deepEqual(loadConfig({ WHARF_STORAGE: 'local' }).storage, { kind: 'local' });
  });

  test('s3 with only the required settings: AWS S3, us-east-1, virtual-hosted, streamed downloads', () => {
    assert.deepEqual(loadConfig(S3).storage, {
      kind: 's3',
      endpoint: undefined,
      region: 'us-east-1',
      bucket: 'wharf-assets',
      accessKeyId: 'AKID',
      secretAccessKey: 'secret',
      forcePathStyle: false,
      downloads: 'stream',
      upload: undefined,
    });
  });

  test('an endpoint makes path style the default; every setting can be given', () => {
    const withEndpoint = loadConfig({ ...S3, WHARF_S3_ENDPOINT: 'http://127.0.0.1:9000' }).storage;
    assert.equal(withEndpoint.kind === 's3' && withEndpoint.forcePathStyle, true);
    assert.deepEqual(
      loadConfig({
        ...S3,
        WHARF_S3_ENDPOINT: 'https://s3.example.com',
        WHARF_S3_REGION: 'eu-central-1',
        WHARF_S3_FORCE_PATH_STYLE: 'false',
        WHARF_S3_DOWNLOADS: 'redirect',
        WHARF_S3_UPLOAD_ACCESS_KEY_ID: 'UPLOADER',
        WHARF_S3_UPLOAD_SECRET_ACCESS_KEY: 'write-only',
      }).storage,
      {
        kind: 's3',
        endpoint: 'https://s3.example.com',
        region: 'eu-central-1',
        bucket: 'wharf-assets',
        accessKeyId: 'AKID',
        secretAccessKey: 'secret',
        forcePathStyle: false,
        downloads: 'redirect',
        upload: { accessKeyId: 'UPLOADER', secretAccessKey: 'write-only' },
      },
    );
  });

  test('each missing required setting is named', () => {
    for (const name of ['WHARF_S3_BUCKET', 'WHARF_S3_ACCESS_KEY_ID', 'WHARF_S3_SECRET_ACCESS_KEY'] as const) {
      const { [name]: _left, ...env } = S3;
      refused(env, new RegExp(`^${name} must be set when WHARF_STORAGE=s3\\.$`));
    }
    refused(
      { WHARF_STORAGE: 's3' },
      /^WHARF_S3_BUCKET must be set[^\n]*\nWHARF_S3_ACCESS_KEY_ID must be set[^\n]*\nWHARF_S3_SECRET_ACCESS_KEY must be set/,
    );
  });

  test('bad values are refused with the variable named', () => {
    refused({ WHARF_STORAGE: 'gcs' }, /^WHARF_STORAGE must be local or s3/);
    refused({ ...S3, WHARF_S3_ENDPOINT: 's3.example.com' }, /^WHARF_S3_ENDPOINT must be an http\(s\) URL/);
    refused({ ...S3, WHARF_S3_FORCE_PATH_STYLE: 'yes' }, /^WHARF_S3_FORCE_PATH_STYLE must be true or false/);
    refused({ ...S3, WHARF_S3_DOWNLOADS: 'proxy' }, /^WHARF_S3_DOWNLOADS must be stream or redirect/);
    // Half of the upload credentials would sign every upload URL with a pair the store refuses.
    for (const half of <Record<string, string>[]>[
      { WHARF_S3_UPLOAD_ACCESS_KEY_ID: 'UPLOADER' },
      { WHARF_S3_UPLOAD_SECRET_ACCESS_KEY: 'write-only' },
    ]) {
      refused(
        { ...S3, ...half },
        /^WHARF_S3_UPLOAD_ACCESS_KEY_ID and WHARF_S3_UPLOAD_SECRET_ACCESS_KEY are set together, or neither\.$/,
      );
    }
  });
});
