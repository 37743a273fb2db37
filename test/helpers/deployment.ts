import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import pg from 'pg';
import { pgQuerySync } from './pg-sync.js';

/**
 * Which deployment the suite runs against. `scripts/test.sh` runs it twice: embedded (SQLite
 * and a local directory) and scaled (WHARF_TEST_DEPLOYMENT=scaled: PostgreSQL at
 * WHARF_TEST_PG_URL, and an S3-compatible store when WHARF_TEST_S3_ENDPOINT is set).
 */
export type Deployment = 'embedded' | 'scaled';

export const deployment: Deployment = process.env.WHARF_TEST_DEPLOYMENT === 'scaled' ? 'scaled' : 'embedded';

/**
 * Whether servers this run starts keep their bytes in an S3 bucket (scaled, with a test S3
 * store). Known before any server starts, so tests can be skipped by it; `onS3(server)` is
 * the same fact about one started server.
 */
export const storesOnS3: boolean = deployment === 'scaled' && !!process.env.WHARF_TEST_S3_ENDPOINT;

/** A scaled-out server's own database (and bucket), made for it and dropped afterwards. */
export interface Backing {
  /** Environment that points Wharf at them. */
  env: Record<string, string>;
  release(): Promise<void>;
}

/** The backing a new server needs: nothing on embedded, a fresh database (and bucket) when scaled. */
export async function provision(): Promise<Backing> {
  if (deployment === 'embedded') return { env: {}, release: async () => {} };
  const database = await createDatabase();
  let bucket: Backing | undefined;
  try {
    bucket = await createBucket();
  } catch (err) {
    await database.release();
    throw err;
  }
  return {
    env: { ...database.env, ...bucket.env },
    async release() {
      await Promise.all([database.release(), bucket.release()]);
    },
  };
}

function adminUrl(): string {
  const url = process.env.WHARF_TEST_PG_URL;
  if (!url) {
    throw new Error(
      'WHARF_TEST_DEPLOYMENT=scaled needs WHARF_TEST_PG_URL (start one with scripts/services/postgres.sh start)',
    );
  }
  return url;
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** A new, empty database on the test server, as Wharf's README says to create one. */
export async function createDatabase(): Promise<Backing> {
  const name = `wharf_${randomBytes(8).toString('hex')}`;
  await admin((c) => c.query(`create database ${name} encoding 'UTF8'`));
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return {
    env: { WHARF_DATABASE_URL: url.toString() },
    async release() {
      // FORCE: a server that crashed on purpose may have left connections behind.
      await admin((c) => c.query(`drop database if exists ${name} with (force)`));
    },
  };
}

/**
 * A database no Wharf has run on, of the deployment's kind: a new PostgreSQL database on the
 * scaled deployment, a SQLite file in `dir` (not yet created) on the embedded one.
 */
export async function emptyDatabase(dir: string): Promise<{ url: string; release(): Promise<void> }> {
  if (deployment !== 'scaled') return { url: `sqlite://${join(dir, 'wharf.db')}`, release: async () => {} };
  const database = await createDatabase();
  return { url: database.env.WHARF_DATABASE_URL!, release: () => database.release() };
}

/** A new bucket on the test S3 store, or nothing (local storage) when there is none. */
async function createBucket(): Promise<Backing> {
  const endpoint = process.env.WHARF_TEST_S3_ENDPOINT;
  if (!endpoint) return { env: {}, release: async () => {} };
  const { S3Client, CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, ListObjectsV2Command } =
    await import('@aws-sdk/client-s3');
  const region = process.env.WHARF_TEST_S3_REGION ?? 'us-east-1';
  const accessKeyId = process.env.WHARF_TEST_S3_ACCESS_KEY_ID ?? '';
  const secretAccessKey = process.env.WHARF_TEST_S3_SECRET_ACCESS_KEY ?? '';
  const s3 = new S3Client(s3Options(endpoint, region, accessKeyId, secretAccessKey));
  const bucket = `wharf-${randomBytes(8).toString('hex')}`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    env: {
      WHARF_STORAGE: 's3',
      WHARF_S3_ENDPOINT: endpoint,
      WHARF_S3_REGION: region,
      WHARF_S3_BUCKET: bucket,
      WHARF_S3_ACCESS_KEY_ID: accessKeyId,
      WHARF_S3_SECRET_ACCESS_KEY: secretAccessKey,
      WHARF_S3_FORCE_PATH_STYLE: 'true',
      // The write-only credentials upload URLs are signed with, as docs/security.md advises.
      ...(process.env.WHARF_TEST_S3_UPLOAD_ACCESS_KEY_ID
        ? {
            WHARF_S3_UPLOAD_ACCESS_KEY_ID: process.env.WHARF_TEST_S3_UPLOAD_ACCESS_KEY_ID,
            WHARF_S3_UPLOAD_SECRET_ACCESS_KEY: process.env.WHARF_TEST_S3_UPLOAD_SECRET_ACCESS_KEY ?? '',
          }
        : {}),
    },
    async release() {
      try {
        for (;;) {
          const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
          const keys = (listed.Contents ?? []).map((o) => ({ Key: o.Key! }));
          if (keys.length === 0) break;
          await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys } }));
        }
        await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
      } finally {
        s3.destroy();
      }
    },
  };
}

function s3Options(endpoint: string, region: string, accessKeyId: string, secretAccessKey: string) {
  return {
    endpoint,
    region,
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
  };
}

interface Server {
  dataDir: string;
  backingEnv: Record<string, string>;
}

/** Whether a server keeps its bytes in an S3 bucket rather than under its data dir. */
export function onS3(server: Server): boolean {
  return server.backingEnv.WHARF_STORAGE === 's3';
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

/** Runs `work` with a client of the server's bucket (scaled), as a test that acts on the store behind Wharf. */
export async function withBucket<T>(
  server: Server,
  work: (s3: import('@aws-sdk/client-s3').S3Client, bucket: string) => Promise<T>,
): Promise<T> {
  const env = server.backingEnv;
  const { S3Client } = await import('@aws-sdk/client-s3');
  const s3 = new S3Client(
    s3Options(
      env.WHARF_S3_ENDPOINT!,
      env.WHARF_S3_REGION!,
      env.WHARF_S3_ACCESS_KEY_ID!,
      env.WHARF_S3_SECRET_ACCESS_KEY!,
    ),
  );
  try {
    return await work(s3, env.WHARF_S3_BUCKET!);
  } finally {
    s3.destroy();
  }
}

/**
 * Lets pages of `origin` send `methods` to the server's bucket (CORS), as a deployment whose
 * browsers upload straight to S3 configures it; reads the rule back so a store that ignores
 * CORS fails here rather than in the browser.
 */
export async function allowOriginOnBucket(server: Server, origin: string, methods: string[]): Promise<void> {
  const { PutBucketCorsCommand, GetBucketCorsCommand } = await import('@aws-sdk/client-s3');
  await withBucket(server, async (s3, bucket) => {
    await s3.send(
      new PutBucketCorsCommand({
        Bucket: bucket,
        CORSConfiguration: {
          CORSRules: [
            {
              AllowedOrigins: [origin],
              AllowedMethods: methods,
              AllowedHeaders: ['*'],
              // Without ETag a browser's multipart upload cannot name its parts.
              ExposeHeaders: ['ETag'],
              MaxAgeSeconds: 600,
            },
          ],
        },
      }),
    );
    const stored = await s3.send(new GetBucketCorsCommand({ Bucket: bucket }));
    if (stored.CORSRules?.[0]?.AllowedOrigins?.[0] !== origin) {
      throw new Error(`The bucket did not keep its CORS rule: ${JSON.stringify(stored.CORSRules)}`);
    }
  });
}

/** Every object key a server's storage holds: its bucket's keys, or the files of its local store. */
export async function storedKeys(server: Server): Promise<string[]> {
  if (!onS3(server)) {
    // The local store keeps an object as a file under objects/, or, when it was composed from
    // multipart parts without a copy, as a directory composed/<key>/ (object.json and the
    // parts). Every directory there holding a file counts as one stored key.
    const composed = (await filesUnder(join(server.dataDir, 'blobs', 'composed'))).map((f) => dirname(f));
    const files = await filesUnder(join(server.dataDir, 'blobs', 'objects'));
    return [...new Set([...files, ...composed])].sort();
  }
  const { ListObjectsV2Command } = await import('@aws-sdk/client-s3');
  return withBucket(server, async (s3, bucket) => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      keys.push(...(page.Contents ?? []).map((o) => o.Key!));
      token = page.NextContinuationToken;
    } while (token);
    return keys.sort();
  });
}

/**
 * Removes one stored object behind Wharf's back, as an operator's cleanup or a bucket restored
 * from an older copy would: its file (and recorded facts) under the local store, or its key in
 * the bucket.
 */
export async function removeStoredObject(server: Server, key: string): Promise<void> {
  if (!onS3(server)) {
    await rm(join(server.dataDir, 'blobs', 'objects', key));
    await rm(join(server.dataDir, 'blobs', 'meta', `${key}.json`), { force: true });
    return;
  }
  const { DeleteObjectCommand } = await import('@aws-sdk/client-s3');
  await withBucket(server, (s3, bucket) => s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })));
}

/**
 * Replaces one stored object's bytes behind Wharf's back, as a failing disk or a wrong restore
 * would: the local store's file is rewritten in place (its recorded facts are left as they
 * were), the bucket's key gets a new object.
 */
export async function replaceStoredObject(server: Server, key: string, bytes: Buffer): Promise<void> {
  if (!onS3(server)) {
    await writeFile(join(server.dataDir, 'blobs', 'objects', key), bytes);
    return;
  }
  const { PutObjectCommand } = await import('@aws-sdk/client-s3');
  await withBucket(server, (s3, bucket) =>
    s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes })),
  );
}

/**
 * Writes an object no row names, as a process that died between storing it and recording it
 * (or between a commit and the delete that should have followed it) leaves one.
 */
export async function putStrayObject(server: Server, key: string, bytes: Buffer): Promise<void> {
  if (!onS3(server)) {
    const path = join(server.dataDir, 'blobs', 'objects', key);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
    return;
  }
  await replaceStoredObject(server, key, bytes);
}

/** Whether storage holds an object at `key`. */
export async function holdsObject(server: Server, key: string): Promise<boolean> {
  return (await storedKeys(server)).includes(key);
}

/**
 * Writes that started and have not finished: temp files of the local store, multipart
 * uploads still open in the bucket (what an upload streamed to S3 leaves if not aborted).
 */
export async function pendingWrites(server: Server): Promise<string[]> {
  if (!onS3(server)) return filesUnder(join(server.dataDir, 'blobs', 'tmp'));
  const { ListMultipartUploadsCommand } = await import('@aws-sdk/client-s3');
  return withBucket(server, async (s3, bucket) => {
    const keys: string[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await s3.send(
        new ListMultipartUploadsCommand({
          Bucket: bucket,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      keys.push(...(page.Uploads ?? []).map((u) => u.Key!));
      if (!page.IsTruncated) return keys.sort();
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  });
}

/**
 * Runs a SELECT on a PostgreSQL database, on a connection of its own, and returns its rows.
 * Synchronous, like the better-sqlite3 reads the tests make on embedded, so one `dbQuery`
 * serves both deployments (see pg-sync.ts). `?` placeholders (outside quoted literals) are
 * bound as text, which PostgreSQL types by their use, as it did psql's quoted literals. Rows
 * come back through json_agg, as JSON values: counts are numbers, times ISO strings.
 */
export function queryPostgres<T>(url: string, query: string, params: unknown[]): T[] {
  let n = 0;
  const text = query
    .split(/('(?:[^']|'')*')/)
    .map((part, i) => (i % 2 === 1 ? part : part.replace(/\?/g, () => `$${++n}`)))
    .join('');
  if (n !== params.length) throw new Error(`query has ${n} placeholders, got ${params.length} values`);
  return pgQuerySync<T>(
    url,
    `select coalesce(json_agg(q), '[]') as rows from (${text}) q`,
    params.map((value) => String(value)),
  );
}
