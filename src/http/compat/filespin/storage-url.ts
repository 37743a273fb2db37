import { randomBytes } from 'node:crypto';
import { Type } from 'typebox';
import { WharfError } from '../../../core/errors.js';
import type { App } from '../../api/context.js';
import { contentTypeFor } from '../content-types.js';
import type { CompatContext } from '../context.js';
import { fileSpinErrorResponses } from './errors.js';

/** The document's expiry: the URL is valid for 24 hours. */
export const STORAGE_URL_EXPIRY_SECONDS = 86400;

const StorageUrlQuery = Type.Object({
  filename: Type.String({ minLength: 1, maxLength: 1024, description: 'Name of the file to upload.' }),
  asset_id: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 128,
      description: 'An id of your own (letters, digits, _ or -); a fresh 32-hex id otherwise.',
    }),
  ),
  protocol: Type.Optional(Type.String({ maxLength: 16, description: 'Only POST is supported.' })),
});

const StorageUrlResponse = Type.Object({
  asset_id: Type.String(),
  storage: Type.Object({
    name: Type.String(),
    url: Type.String({ description: 'POST the form here (multipart/form-data).' }),
    fields: Type.Object(
      {
        key: Type.String(),
        'x-amz-algorithm': Type.String(),
        'x-amz-credential': Type.String(),
        'x-amz-date': Type.String(),
        policy: Type.String(),
        'x-amz-signature': Type.String(),
      },
      {
        additionalProperties: Type.String(),
        description:
          'Send every field (and no other), then the file as the part named `file`. The file gets ' +
          "the type of the file name's extension.",
      },
    ),
    protocol: Type.Literal('POST'),
    expiry: Type.Integer({
      description:
        'Seconds the URL stays valid: 86400, or fewer when an upload token that expires sooner asks.',
    }),
    key: Type.String({ description: '"/" followed by fields.key.' }),
    bucket: Type.String(),
    storage_type: Type.Literal('AMAZON_S3'),
  }),
});

/** The bucket the policy is bound to: storage may be any S3-compatible store, or Wharf itself. */
function policyBucket(fields: Record<string, string>): string | undefined {
  const policy = fields.policy;
  if (policy === undefined) return undefined;
  try {
    const document = JSON.parse(Buffer.from(policy, 'base64').toString('utf8')) as { conditions?: unknown };
    if (!Array.isArray(document.conditions)) return undefined;
    for (const condition of document.conditions) {
      if (condition && typeof condition === 'object' && !Array.isArray(condition)) {
        const bucket = (condition as Record<string, unknown>).bucket;
        if (typeof bucket === 'string') return bucket;
      }
    }
  } catch {
    // A policy we cannot read names no bucket; the caller falls back.
  }
  return undefined;
}

/** GET /api/v1/assets/new/content_storage_url: a presigned S3 POST form for one file. */
export async function storageUrlRoute(app: App, { core }: CompatContext): Promise<void> {
  app.get(
    '/api/v1/assets/new/content_storage_url',
    {
      schema: {
        operationId: 'filespinGetStorageUrl',
        summary: 'Get a presigned S3 POST form for uploading a file straight to storage',
        description:
          'Step 1 of 3: POST the returned fields and the file (as `file`) to storage.url, then call ' +
          'POST /api/v1/assets/new/register_asset. Valid for 24 hours.',
        tags: ['FileSpin'],
        querystring: StorageUrlQuery,
        response: { 200: StorageUrlResponse, ...fileSpinErrorResponses },
      },
    },
    async (request) => {
      const { filename, protocol } = request.query;
      if (protocol !== undefined && protocol.toUpperCase() !== 'POST') {
        throw new WharfError(
          'VALIDATION_FAILED',
          `Unsupported protocol "${protocol}": only POST is offered.`,
        );
      }
      // FileSpin's asset ids are 32 hex digits.
      const assetId = request.query.asset_id ?? randomBytes(16).toString('hex');
      const { upload, post } = await core.uploads.createPost(request.principal!, {
        name: filename,
        externalId: assetId,
        // The document's form has exactly six fields and no type: the file name's extension
        // gives the file's. Any condition on a Content-Type field, even starts-with "", would
        // make storage (S3, and Wharf's) refuse the document's form, which has none.
        impliedContentType: contentTypeFor(filename, undefined),
        expiresInSeconds: STORAGE_URL_EXPIRY_SECONDS,
        intent: { metadata: { filespin_asset_id: assetId } },
      });
      // S3 reads form field names case-insensitively; the document spells them in lower case.
      const fields: Record<string, string> = {};
      for (const [name, value] of Object.entries(post.fields)) fields[name.toLowerCase()] = value;
      const key = fields.key ?? upload.storageKey;
      return {
        asset_id: assetId,
        storage: {
          name: upload.name,
          url: post.url,
          fields: {
            key,
            'x-amz-algorithm': fields['x-amz-algorithm'] ?? '',
            'x-amz-credential': fields['x-amz-credential'] ?? '',
            'x-amz-date': fields['x-amz-date'] ?? '',
            policy: fields.policy ?? '',
            'x-amz-signature': fields['x-amz-signature'] ?? '',
            ...fields,
          },
          protocol: 'POST' as const,
          // What the policy was signed for: the document's 24 hours, or less for an upload token,
          // whose forms never outlive it (a client timing its retries by this must not be told a day).
          expiry: Math.floor((upload.expiresAt - upload.createdAt) / 1000),
          key: `/${key}`,
          bucket: policyBucket(fields) ?? fields.bucket ?? '',
          storage_type: 'AMAZON_S3' as const,
        },
      };
    },
  );
}
