import { createHmac, timingSafeEqual } from 'node:crypto';
import { Hash } from '@smithy/hash-node';
import { HttpRequest } from '@smithy/protocol-http';
import { createScope, getSigningKey, SignatureV4 } from '@smithy/signature-v4';
import { hexToBase64 } from '../core/digests.js';
import { WharfError } from '../core/errors.js';
import type {
  PostConditions,
  PresignedPost,
  PresignedRequest,
  PresignOperationRequest,
  PresignPostRequest,
  PresignPutRequest,
  PresignVerifier,
  SignedRequest,
  VerifiedRequest,
} from '../core/ports.js';
import type { PutPresigner } from './fs-store.js';
import {
  decodePolicy,
  encodePolicy,
  evaluatePolicy,
  iso8601,
  normalizeFields,
  type PolicyCondition,
} from './post-policy.js';
import { encodeS3Key, QuerySigner } from './sigv4-query.js';

export { encodeS3Key };

export interface LocalEndpointOptions {
  /** Public base URL of this Wharf; the endpoint lives under `${publicUrl}/s3`. */
  publicUrl: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export const LOCAL_ENDPOINT_PATH = '/s3';
/** The embedded endpoint's one bucket; POST Object forms go to `${LOCAL_ENDPOINT_PATH}/${LOCAL_BUCKET}/`. */
export const LOCAL_BUCKET = 'wharf';
const ALGORITHM = 'AWS4-HMAC-SHA256';
const MAX_EXPIRES = 7 * 24 * 3600;

/**
 * Wharf's own S3-style storage endpoint in the embedded deployment. URLs are real SigV4
 * query-presigned S3 URLs (byte for byte what the AWS presigner makes), so the scaled-out
 * deployment can hand out the object store's URLs instead and clients never see a difference.
 * Verification recomputes the same presign from what arrived and compares signatures.
 */
export class LocalEndpoint implements PutPresigner, PresignVerifier {
  private readonly base: URL;
  private readonly basePath: string;
  private readonly origin: string;
  private readonly signer: QuerySigner;
  private readonly verifier: SignatureV4;
  private readonly credentials: { accessKeyId: string; secretAccessKey: string };

  constructor(private readonly options: LocalEndpointOptions) {
    this.base = new URL(options.publicUrl);
    this.basePath = `${this.base.pathname.replace(/\/$/, '')}${LOCAL_ENDPOINT_PATH}/${options.bucket}/`;
    const common = {
      credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
      region: options.region,
      service: 's3',
      sha256: Hash.bind(null, 'sha256'),
    };
    this.credentials = common.credentials;
    this.origin = `${this.base.protocol}//${this.base.host}`;
    // URLs are signed as @aws-sdk/s3-request-presigner signs them (the unit tests compare the
    // two on randomised input), by a signer made for just these requests (see QuerySigner).
    this.signer = new QuerySigner({ ...common.credentials, region: options.region, service: 's3' });
    // Same settings S3RequestPresigner gives its signer: S3 paths are signed as sent.
    this.verifier = new SignatureV4({ ...common, uriEscapePath: false, applyChecksum: false });
  }

  async presignPut(request: PresignPutRequest): Promise<PresignedRequest> {
    const headers: Record<string, string> = {
      'content-type': request.contentType,
      'content-length': String(request.size),
    };
    if (request.md5) headers['content-md5'] = hexToBase64(request.md5);
    if (request.sha256) headers['x-amz-checksum-sha256'] = hexToBase64(request.sha256);
    // Every header about the body is signed (the SDK would leave Content-Type out by default)
    // and stays a header, where it binds the body (none is hoisted into the query).
    const path = this.basePath + encodeS3Key(request.key);
    const query = this.signer.presignQuery({
      method: 'PUT',
      host: this.base.host,
      path,
      query: {},
      headers,
      now: request.now,
      expiresInSeconds: request.expiresInSeconds,
    });
    const url = `${this.origin}${path}?${query}`;
    // Content-Length is bound too, but clients set it themselves (browsers must).
    const { 'content-length': _length, ...clientHeaders } = headers;
    return { method: 'PUT', url, headers: canonicalCase(clientHeaders) };
  }

  /**
   * The URL S3 itself would presign for this operation on this endpoint: same method, same
   * `?uploads` / `?uploadId=…&partNumber=…` query (which SigV4 signs), so an S3 client needs
   * nothing but the URL. PutObject signs its type and not its length: the client (Uppy)
   * never says how large the file is.
   */
  async presignOperation(request: PresignOperationRequest): Promise<PresignedRequest> {
    const { method, query } = operationShape(request);
    const headers: Record<string, string> = {};
    if (request.operation === 'PutObject' || request.operation === 'CreateMultipartUpload') {
      if (request.contentType !== undefined) headers['content-type'] = request.contentType;
      else if (request.operation === 'PutObject')
        throw new Error('PutObject is signed with its Content-Type');
    }
    const path = this.basePath + encodeS3Key(request.key);
    const signed = this.signer.presignQuery({
      method,
      host: this.base.host,
      path,
      query,
      headers,
      now: request.now,
      expiresInSeconds: request.expiresInSeconds,
    });
    const url = `${this.origin}${path}?${signed}`;
    return { method, url, headers: canonicalCase(headers) };
  }

  /**
   * The policy and fields S3's own presigned POST gives (@aws-sdk/s3-presigned-post builds
   * the same document with the same signing key), names lower-cased as in boto3's forms.
   * Built here rather than through that function because it reads the wall clock, and the
   * policy's dates must come from `request.now`.
   */
  async presignPost(request: PresignPostRequest): Promise<PresignedPost> {
    const amzDate = iso8601(request.now).replace(/[-:]/g, '');
    const shortDate = amzDate.slice(0, 8);
    const credential = `${this.options.accessKeyId}/${createScope(shortDate, this.options.region, 's3')}`;
    const conditions: PolicyCondition[] = [
      { bucket: this.options.bucket },
      { key: request.key },
      ['content-length-range', request.minSize, request.maxSize],
      { 'x-amz-algorithm': ALGORITHM },
      { 'x-amz-credential': credential },
      { 'x-amz-date': amzDate },
    ];
    if (request.contentType !== undefined) conditions.push(['eq', '$Content-Type', request.contentType]);
    const policy = encodePolicy({
      expiration: iso8601(request.now + request.expiresInSeconds * 1000),
      conditions,
    });
    const fields: Record<string, string> = { key: request.key };
    if (request.contentType !== undefined) fields['Content-Type'] = request.contentType;
    Object.assign(fields, {
      'x-amz-algorithm': ALGORITHM,
      'x-amz-credential': credential,
      'x-amz-date': amzDate,
      policy,
      'x-amz-signature': await this.signPolicy(policy, shortDate),
    });
    return { url: `${this.base.protocol}//${this.base.host}${this.basePath}`, fields };
  }

  /**
   * Checks a form as S3 does: algorithm and credential scope, then the signature over the
   * policy exactly as sent, then expiry and every condition against the fields.
   */
  async verifyPost(raw: Record<string, string>, now: number): Promise<PostConditions> {
    const fields = normalizeFields(raw);
    const required = (name: string): string => {
      const value = fields.get(name);
      if (value === undefined || value === '') {
        throw new WharfError('VALIDATION_FAILED', `Bucket POST must contain a field named '${name}'.`);
      }
      return value;
    };
    const policy = required('policy');
    if (required('x-amz-algorithm') !== ALGORITHM) {
      throw new WharfError('VALIDATION_FAILED', `x-amz-algorithm must be ${ALGORITHM}.`);
    }
    const [accessKeyId, shortDate, region, service, terminator, ...rest] =
      required('x-amz-credential').split('/');
    if (accessKeyId !== this.options.accessKeyId) {
      throw new WharfError(
        'UNKNOWN_ACCESS_KEY',
        'The AWS Access Key Id you provided does not exist in our records.',
      );
    }
    const amzDate = required('x-amz-date');
    if (
      !parseAmzDate(amzDate) ||
      shortDate !== amzDate.slice(0, 8) ||
      region !== this.options.region ||
      service !== 's3' ||
      terminator !== 'aws4_request' ||
      rest.length > 0
    ) {
      throw new WharfError('VALIDATION_FAILED', 'The x-amz-credential or x-amz-date field is malformed.');
    }
    const expected = Buffer.from(await this.signPolicy(policy, shortDate));
    const given = Buffer.from(required('x-amz-signature').toLowerCase());
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new WharfError(
        'INVALID_SIGNATURE',
        'The request signature we calculated does not match the signature you provided.',
      );
    }
    // Only a signed policy is read: nothing about an unsigned one is worth telling.
    return evaluatePolicy(decodePolicy(policy), fields, this.options.bucket, now);
  }

  private async signPolicy(policy: string, shortDate: string): Promise<string> {
    const key = await getSigningKey(
      Hash.bind(null, 'sha256'),
      this.credentials,
      shortDate,
      this.options.region,
      's3',
    );
    return createHmac('sha256', key).update(policy, 'utf8').digest('hex');
  }

  /**
   * Checks the signature over method, path, query and signed headers, then expiry. What an
   * operation additionally needs signed (a PUT's type and length, a part's number) is the
   * caller's to check against what this returns.
   */
  async verify(request: SignedRequest, now: number): Promise<VerifiedRequest> {
    const { path, query } = splitUrl(request.rawUrl);
    if (!path.startsWith(this.basePath)) throw new WharfError('NOT_FOUND', 'No such bucket.');
    const key = decodeURIComponent(path.slice(this.basePath.length));

    const param = (name: string): string => {
      const value = query[name];
      if (typeof value !== 'string' || value === '') {
        throw new WharfError('MALFORMED_SIGNATURE', `Query-string authentication requires ${name}.`);
      }
      return value;
    };
    if (param('X-Amz-Algorithm') !== 'AWS4-HMAC-SHA256') {
      throw new WharfError('MALFORMED_SIGNATURE', 'X-Amz-Algorithm must be AWS4-HMAC-SHA256.');
    }
    const [accessKeyId, shortDate, region, service, terminator] = param('X-Amz-Credential').split('/');
    if (accessKeyId !== this.options.accessKeyId) {
      throw new WharfError('UNKNOWN_ACCESS_KEY', 'The access key id does not exist in our records.');
    }
    const amzDate = param('X-Amz-Date');
    const signingDate = parseAmzDate(amzDate);
    const expires = Number(param('X-Amz-Expires'));
    if (
      !signingDate ||
      shortDate !== amzDate.slice(0, 8) ||
      region !== this.options.region ||
      service !== 's3' ||
      terminator !== 'aws4_request' ||
      !Number.isInteger(expires) ||
      expires < 1 ||
      expires > MAX_EXPIRES
    ) {
      throw new WharfError('MALFORMED_SIGNATURE', 'The presigned URL has malformed signing parameters.');
    }
    // The signature covers the parameter's text. It is recomputed below from the number, so a
    // URL whose expiry is written another way ("0900", "9e2", "900.0") would still match.
    if (param('X-Amz-Expires') !== String(expires)) {
      throw new WharfError(
        'INVALID_SIGNATURE',
        'The request signature we calculated does not match the signature you provided.',
      );
    }
    const signedHeaders = param('X-Amz-SignedHeaders').split(';');
    const signature = param('X-Amz-Signature');

    // Own properties only: a signed header list naming `constructor` or `__proto__` must
    // find nothing, not Object.prototype's members (the route fuzzer sent one).
    const headers: Record<string, string> = Object.create(null);
    for (const name of signedHeaders) {
      const value = Object.hasOwn(request.headers, name) ? request.headers[name] : undefined;
      if (value === undefined) throw new WharfError('INVALID_SIGNATURE', `Signed header ${name} is missing.`);
      headers[name] = Array.isArray(value) ? value.join(',') : value;
    }
    const rest: Record<string, string | string[]> = {};
    const covered: Record<string, string> = {};
    for (const [name, value] of Object.entries(query)) {
      if (!/^X-Amz-(Algorithm|Credential|Date|Expires|SignedHeaders|Signature|Content-Sha256)$/.test(name)) {
        rest[name] = value;
        // Our URLs never repeat a parameter; a repeated one fails the signature below.
        if (typeof value === 'string') covered[name] = value;
      }
    }
    const payload =
      typeof query['X-Amz-Content-Sha256'] === 'string' ? query['X-Amz-Content-Sha256'] : undefined;
    const signed = new Set(signedHeaders);
    const unhoistable = new Set(signedHeaders);
    if (!payload) unhoistable.add('x-amz-content-sha256');
    const recomputed = await this.verifier.presign(
      new HttpRequest({
        method: request.method,
        path,
        query: rest,
        // Spelled as S3RequestPresigner spells it: a hoisted header keeps its case in the query.
        headers: { ...headers, 'X-Amz-Content-Sha256': payload ?? 'UNSIGNED-PAYLOAD' },
      }),
      {
        signingDate,
        expiresIn: expires,
        signableHeaders: signed,
        unsignableHeaders: payload ? new Set() : new Set(['x-amz-content-sha256']),
        unhoistableHeaders: unhoistable,
      },
    );
    const expected = Buffer.from(String(recomputed.query?.['X-Amz-Signature']));
    const given = Buffer.from(signature);
    if (
      recomputed.query?.['X-Amz-SignedHeaders'] !== signedHeaders.join(';') ||
      expected.length !== given.length ||
      !timingSafeEqual(expected, given)
    ) {
      throw new WharfError(
        'INVALID_SIGNATURE',
        'The request signature we calculated does not match the signature you provided.',
      );
    }
    // Expiry is checked after the signature so an attacker learns nothing from timing it.
    if (now > signingDate.getTime() + expires * 1000) {
      throw new WharfError('URL_EXPIRED', 'Request has expired');
    }
    if (now < signingDate.getTime() - 15 * 60_000) {
      throw new WharfError('MALFORMED_SIGNATURE', 'Request is not valid yet.');
    }
    return { key, query: covered, signedHeaders };
  }
}

/** Method and query of each S3 operation, as the S3 API spells them. */
function operationShape(request: PresignOperationRequest): {
  method: PresignedRequest['method'];
  query: Record<string, string>;
} {
  const uploadId = (): string => {
    if (!request.multipartId) throw new Error(`${request.operation} needs a multipart id`);
    return request.multipartId;
  };
  switch (request.operation) {
    case 'PutObject':
      return { method: 'PUT', query: {} };
    case 'CreateMultipartUpload':
      return { method: 'POST', query: { uploads: '' } };
    case 'UploadPart': {
      const part = request.partNumber;
      if (part === undefined || !Number.isInteger(part) || part < 1 || part > 10_000) {
        throw new Error('UploadPart needs a part number from 1 to 10000');
      }
      return { method: 'PUT', query: { partNumber: String(part), uploadId: uploadId() } };
    }
    case 'ListParts':
      return { method: 'GET', query: { uploadId: uploadId() } };
    case 'CompleteMultipartUpload':
      return { method: 'POST', query: { uploadId: uploadId() } };
    case 'AbortMultipartUpload':
      return { method: 'DELETE', query: { uploadId: uploadId() } };
  }
}

function splitUrl(rawUrl: string): { path: string; query: Record<string, string | string[]> } {
  const at = rawUrl.indexOf('?');
  const path = at === -1 ? rawUrl : rawUrl.slice(0, at);
  const query: Record<string, string | string[]> = {};
  for (const [name, value] of new URLSearchParams(at === -1 ? '' : rawUrl.slice(at + 1))) {
    const prior = query[name];
    query[name] = prior === undefined ? value : Array.isArray(prior) ? [...prior, value] : [prior, value];
  }
  return { path, query };
}

function parseAmzDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return undefined;
  return new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
}

function canonicalCase(headers: Record<string, string>): Record<string, string> {
  const names: Record<string, string> = {
    'content-type': 'Content-Type',
    'content-md5': 'Content-MD5',
    'x-amz-checksum-sha256': 'x-amz-checksum-sha256',
  };
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [names[k] ?? k, v]));
}
