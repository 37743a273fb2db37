import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { AFTER_COMMIT_CHECK_MS } from '../../src/core/assets.js';
import { ManualClock } from '../../src/core/clock.js';
import { dbQuery, filesUnder } from '../helpers/assets.js';
import { deployment, pendingWrites, provision, storedKeys, storesOnS3 } from '../helpers/deployment.js';
import { sha256Hex } from '../helpers/http.js';
import { startWharfProcess, type WharfProcess } from '../helpers/server-process.js';
import { freePort, startWharf, type TestWharf } from '../helpers/wharf.js';

/*
 * kill -9 rounds: Wharf runs as its own process; concurrent uploads go through every flow
 * (direct, presigned PUT + complete, S3-style multipart, tus) while the process is SIGKILLed
 * at a moment the plan draws (after the k-th answer of the round, with other requests in
 * flight), then restarted on the same database and storage; interrupted uploads resume where
 * their protocol allows. At the end, every upload Wharf acknowledged (a 2xx naming an asset)
 * must be there byte for byte, no asset may be partial or unverified, and after the sweep no
 * byte may be left that belongs to no asset (nor to an upload still open), and no temp file.
 *
 * The plan (flows, sizes, kill moments) comes from a seed, printed; replay a run with
 * WHARF_CRASH_SEED=<seed>. WHARF_CRASH_ROUNDS sets the number of rounds.
 */
const SEED = Number(process.env.WHARF_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const ROUNDS = Number(process.env.WHARF_CRASH_ROUNDS ?? 5);

const KiB = 1024;
const MiB = 1024 * KiB;
/** S3's smallest part (all parts but the last). */
const PART = 5 * MiB;

type FlowName = 'direct' | 'presigned' | 'multipart' | 'tus';

interface PlannedUpload {
  flow: FlowName;
  size: number;
}

interface RoundPlan {
  uploads: PlannedUpload[];
  /** SIGKILL once this many answers of the round have arrived. */
  killAfter: number;
  /** Which of the uploads interrupted so far are resumed this round (by index, modulo). */
  resume: boolean[];
}

const roundPlan: fc.Arbitrary<RoundPlan> = fc.record({
  uploads: fc.array(
    fc.record({
      flow: fc.constantFrom<FlowName>('direct', 'presigned', 'multipart', 'tus'),
      size: fc.oneof(
        { arbitrary: fc.integer({ min: 1, max: 64 * KiB }), weight: 3 },
        { arbitrary: fc.integer({ min: 64 * KiB, max: 3 * MiB }), weight: 3 },
        // Two parts for multipart (the first exactly 5 MiB), several PATCHes for tus.
        { arbitrary: fc.integer({ min: PART + 1, max: PART + 512 * KiB }), weight: 1 },
      ),
    }),
    { minLength: 8, maxLength: 12 },
  ),
  killAfter: fc.integer({ min: 1, max: 50 }),
  resume: fc.array(fc.boolean(), { minLength: 16, maxLength: 16 }),
});

/** The bytes of upload `id`: a keystream of the seed, so a replay sends the very same bytes. */
function bytesOf(id: string, size: number): Buffer {
  const key = createHash('sha256').update(`${SEED}:${id}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

/** The connection died (the server was killed): not an answer. */
class Interrupted extends Error {}

interface Context {
  base: string;
  key: string;
  /** Called with every answer that arrives (the kill trigger counts them). */
  answered(): void;
}

async function send(
  ctx: Context,
  path: string,
  init: RequestInit,
): Promise<Response & { bodyBytes: Buffer }> {
  const url = path.startsWith('http') ? path : `${ctx.base}${path}`;
  let res: Response;
  let body: Buffer;
  try {
    res = await fetch(url, init);
    body = Buffer.from(await res.arrayBuffer());
  } catch (err) {
    throw new Interrupted(String((err as Error)?.cause ?? err));
  }
  ctx.answered();
  return Object.assign(res, { bodyBytes: body });
}

// biome-ignore lint/suspicious/noExplicitAny: the answers of several APIs, read field by field
function json(res: { bodyBytes: Buffer }): any {
  try {
    return JSON.parse(res.bodyBytes.toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * One upload: a state machine whose steps are single requests, so a crash stops it between
 * (or during) steps and a later round picks it up at the step that did not finish.
 */
abstract class Flow {
  assetId: string | undefined;
  /** A refusal that ends the flow without an asset (never a 5xx: those fail the test). */
  refused: string | undefined;
  readonly sha256: string;
  constructor(
    readonly id: string,
    readonly flow: FlowName,
    readonly bytes: Buffer,
  ) {
    this.sha256 = sha256Hex(bytes);
  }
  get finished(): boolean {
    return this.assetId !== undefined || this.refused !== undefined;
  }
  /** Runs steps until the upload is acknowledged or refused; throws Interrupted on a crash. */
  async run(ctx: Context): Promise<void> {
    while (!this.finished) await this.step(ctx);
  }
  protected abstract step(ctx: Context): Promise<void>;
  /** The response a step expected, or the end of the flow as refused (a 5xx fails the test). */
  protected expect(res: Response & { bodyBytes: Buffer }, ok: number[], what: string): boolean {
    if (ok.includes(res.status)) return true;
    const text = res.bodyBytes.toString('utf8').slice(0, 300);
    if (res.status >= 500) throw new Error(`${this.flow} ${this.id}: ${what} answered ${res.status} ${text}`);
    this.refused = `${what}: ${res.status} ${text}`;
    return false;
  }
  protected acknowledged(id: unknown, what: string): void {
    assert.equal(typeof id, 'string', `${this.flow} ${this.id}: ${what} named no asset`);
    this.assetId = id as string;
  }
}

class DirectFlow extends Flow {
  protected async step(ctx: Context): Promise<void> {
    const res = await send(ctx, `/v1/assets?name=${this.id}.bin`, {
      method: 'POST',
      headers: { 'x-api-key': ctx.key, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(this.bytes),
    });
    if (this.expect(res, [200, 201], 'POST /v1/assets'))
      this.acknowledged(json(res)?.asset?.id, 'POST /v1/assets');
  }
  /** A direct upload cut off is gone with its request; resuming it is sending it again. */
}

class PresignedFlow extends Flow {
  private intent: { id: string; url: string; headers: Record<string, string> } | undefined;
  private put = false;
  protected async step(ctx: Context): Promise<void> {
    if (!this.intent) {
      const res = await send(ctx, '/v1/uploads', {
        method: 'POST',
        headers: { 'x-api-key': ctx.key, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `${this.id}.bin`, size: this.bytes.length, sha256: this.sha256 }),
      });
      if (this.expect(res, [201], 'POST /v1/uploads')) this.intent = json(res);
      return;
    }
    if (!this.put) {
      const res = await send(ctx, this.intent.url, {
        method: 'PUT',
        headers: this.intent.headers,
        body: new Uint8Array(this.bytes),
      });
      // 412: the PUT had landed before the crash (S3 URLs are write-once).
      if (this.expect(res, [200, 412], 'presigned PUT')) this.put = true;
      return;
    }
    const res = await send(ctx, `/v1/uploads/${this.intent.id}/complete`, {
      method: 'POST',
      headers: { 'x-api-key': ctx.key },
    });
    if (res.status === 409 && json(res)?.error?.code === 'UPLOAD_INCOMPLETE') {
      this.put = false;
      return;
    }
    if (this.expect(res, [200], 'complete')) this.acknowledged(json(res)?.asset?.id, 'complete');
  }
}

class MultipartFlow extends Flow {
  private started: { id: string } | undefined;
  private etags: Array<string | undefined> = [];
  private parts(): Buffer[] {
    const out: Buffer[] = [];
    for (let at = 0; at < this.bytes.length || out.length === 0; at += PART) {
      out.push(this.bytes.subarray(at, at + PART));
    }
    return out;
  }
  protected async step(ctx: Context): Promise<void> {
    if (!this.started) {
      const res = await send(ctx, '/v1/multipart', {
        method: 'POST',
        headers: { 'x-api-key': ctx.key, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `${this.id}.bin`, size: this.bytes.length, sha256: this.sha256 }),
      });
      if (this.expect(res, [201], 'POST /v1/multipart')) this.started = json(res);
      return;
    }
    const parts = this.parts();
    const missing = parts.map((_, i) => i + 1).filter((n) => this.etags[n - 1] === undefined);
    if (missing.length > 0) {
      const signed = await send(ctx, `/v1/multipart/${this.started.id}/parts`, {
        method: 'POST',
        headers: { 'x-api-key': ctx.key, 'content-type': 'application/json' },
        body: JSON.stringify({ partNumbers: missing }),
      });
      if (!this.expect(signed, [200], 'sign parts')) return;
      for (const part of json(signed).parts as Array<{
        partNumber: number;
        url: string;
        headers: Record<string, string>;
      }>) {
        const res = await send(ctx, part.url, {
          method: 'PUT',
          headers: part.headers,
          body: new Uint8Array(parts[part.partNumber - 1]!),
        });
        if (!this.expect(res, [200], `PUT part ${part.partNumber}`)) return;
        this.etags[part.partNumber - 1] = res.headers.get('etag') ?? undefined;
      }
      return;
    }
    const res = await send(ctx, `/v1/multipart/${this.started.id}/complete`, {
      method: 'POST',
      headers: { 'x-api-key': ctx.key, 'content-type': 'application/json' },
      body: JSON.stringify({ parts: this.etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) }),
    });
    if (this.expect(res, [200], 'complete multipart')) this.acknowledged(json(res)?.asset?.id, 'complete');
  }
}

class TusFlow extends Flow {
  private location: string | undefined;
  private offset: number | undefined;
  protected async step(ctx: Context): Promise<void> {
    const tus = { 'x-api-key': ctx.key, 'tus-resumable': '1.0.0' };
    if (!this.location) {
      const res = await send(ctx, '/v1/tus/', {
        method: 'POST',
        headers: {
          ...tus,
          'upload-length': String(this.bytes.length),
          'upload-metadata': `filename ${Buffer.from(`${this.id}.bin`).toString('base64')}`,
        },
      });
      if (this.expect(res, [201], 'tus create')) {
        this.location = res.headers.get('location') ?? undefined;
        this.offset = 0;
      }
      return;
    }
    if (this.offset === undefined) {
      // After a crash the offset is the server's to say (and a finished upload names its asset).
      const head = await send(ctx, this.location, { method: 'HEAD', headers: tus });
      if (!this.expect(head, [200], 'tus HEAD')) return;
      const assetId = head.headers.get('wharf-asset-id');
      if (assetId) return this.acknowledged(assetId, 'tus HEAD');
      this.offset = Number(head.headers.get('upload-offset'));
      return;
    }
    // A third of the file per PATCH, at least 1 MiB.
    const chunk = Math.max(MiB, Math.ceil(this.bytes.length / 3));
    const end = Math.min(this.bytes.length, this.offset + chunk);
    const sentFrom = this.offset;
    this.offset = undefined; // Unknown until the answer arrives.
    const res = await send(ctx, this.location, {
      method: 'PATCH',
      headers: {
        ...tus,
        'upload-offset': String(sentFrom),
        'content-type': 'application/offset+octet-stream',
      },
      body: new Uint8Array(this.bytes.subarray(sentFrom, end)),
    });
    if (!this.expect(res, [204], 'tus PATCH')) return;
    this.offset = Number(res.headers.get('upload-offset'));
    const assetId = res.headers.get('wharf-asset-id');
    if (assetId) this.acknowledged(assetId, 'tus PATCH');
  }
}

function newFlow(id: string, planned: PlannedUpload): Flow {
  const bytes = bytesOf(id, planned.size);
  switch (planned.flow) {
    case 'direct':
      return new DirectFlow(id, 'direct', bytes);
    case 'presigned':
      return new PresignedFlow(id, 'presigned', bytes);
    case 'multipart':
      return new MultipartFlow(id, 'multipart', bytes);
    case 'tus':
      return new TusFlow(id, 'tus', bytes);
  }
}

test(`kill -9 rounds: acknowledged uploads survive, nothing partial, nothing orphaned (${deployment})`, {
  timeout: 15 * 60_000,
}, async (t) => {
  t.diagnostic(
    `kill rounds seed ${SEED} (replay with WHARF_CRASH_SEED=${SEED}), ${ROUNDS} rounds, ${deployment}`,
  );
  const plans = fc.sample(roundPlan, { seed: SEED, numRuns: ROUNDS });
  const dataDir = await mkdtemp(join(tmpdir(), 'wharf-kill-'));
  const backing = await provision();
  const server = { dataDir, backingEnv: backing.env };
  const key = `kill-rounds-key-${randomBytes(8).toString('hex')}`;
  const env = {
    ...backing.env,
    WHARF_DATA_DIR: dataDir,
    WHARF_PORT: String(await freePort()),
    WHARF_API_KEY: key,
    WHARF_SWEEP_INTERVAL: '0',
  };
  const figures = {
    rounds: 0,
    started: 0,
    acknowledged: 0,
    resumed: 0,
    recovered: 0,
    interruptedRequests: 0,
    refused: 0,
  };
  const byFlow: Record<string, { acked: number; started: number }> = {};
  const acknowledged: Flow[] = [];
  let interrupted: Flow[] = [];
  let wharf: WharfProcess | undefined;
  let later: TestWharf | undefined;
  try {
    for (const [round, plan] of plans.entries()) {
      wharf = await startWharfProcess(env);
      figures.rounds += 1;
      const fresh = plan.uploads.map((planned, i) => newFlow(`r${round}-u${i}`, planned));
      const resumed = interrupted.filter((_, i) => plan.resume[i % plan.resume.length]);
      interrupted = interrupted.filter((f) => !resumed.includes(f));
      figures.started += fresh.length;
      figures.resumed += resumed.length;
      for (const f of fresh) {
        byFlow[f.flow] ??= { acked: 0, started: 0 };
        byFlow[f.flow]!.started += 1;
      }

      let answers = 0;
      const victim = wharf;
      let killing: Promise<void> | undefined;
      const ctx: Context = {
        base: victim.url,
        key,
        answered: () => {
          answers += 1;
          if (answers === plan.killAfter) killing = victim.kill();
        },
      };
      const outcomes = await Promise.allSettled([...fresh, ...resumed].map((f) => f.run(ctx)));
      // The round's uploads all ended before its kill moment: the kill hits an idle server.
      await (killing ?? victim.kill());
      assert.equal(victim.running(), false);
      for (const [i, outcome] of outcomes.entries()) {
        const flow = [...fresh, ...resumed][i]!;
        if (outcome.status === 'rejected') {
          if (!(outcome.reason instanceof Interrupted)) throw outcome.reason;
          figures.interruptedRequests += 1;
          interrupted.push(flow);
        } else if (flow.assetId) {
          acknowledged.push(flow);
          byFlow[flow.flow] ??= { acked: 0, started: 0 };
          byFlow[flow.flow]!.acked += 1;
        } else {
          figures.refused += 1;
          t.diagnostic(`refused (not acknowledged): ${flow.flow} ${flow.id}: ${flow.refused}`);
        }
      }
    }
    // A last round without a kill: every upload a crash cut off is resumed (or, for a direct
    // upload, sent again) and must now finish. Then that server is killed too.
    wharf = await startWharfProcess(env);
    const recovering = interrupted;
    const ctx: Context = { base: wharf.url, key, answered: () => {} };
    const outcomes = await Promise.allSettled(recovering.map((f) => f.run(ctx)));
    for (const [i, outcome] of outcomes.entries()) {
      const flow = recovering[i]!;
      if (outcome.status === 'rejected') throw outcome.reason;
      if (flow.assetId) {
        acknowledged.push(flow);
        byFlow[flow.flow]!.acked += 1;
        figures.recovered += 1;
      } else {
        figures.refused += 1;
        t.diagnostic(`refused (not acknowledged): ${flow.flow} ${flow.id}: ${flow.refused}`);
      }
    }
    await wharf.kill();
    figures.acknowledged = acknowledged.length;
    assert.ok(acknowledged.length > 0, 'some uploads were acknowledged');

    // The last kill was the last event: the data is checked by a server started afterwards,
    // in this process, with a clock it can move.
    const clock = new ManualClock(Date.now());
    const check = await startWharf({ sharing: server as TestWharf, clock });
    later = check;
    // A sweep now completes uploads whose bytes all arrived before a crash stopped them (tus,
    // multipart), and frees what crashed writes left; the jobs verify what is left to verify.
    await check.wharf.core.uploads.sweep();
    await check.wharf.core.jobs.drain();

    // 1. Every acknowledged upload is there, byte for byte.
    let survived = 0;
    for (const flow of acknowledged) {
      const res: Response = await fetch(`${check.url}/v1/assets/${flow.assetId}/content`, {
        headers: { 'x-api-key': key },
      });
      const body: Buffer = Buffer.from(await res.arrayBuffer());
      assert.equal(
        res.status,
        200,
        `${flow.flow} ${flow.id} (asset ${flow.assetId}): ${body.toString().slice(0, 200)}`,
      );
      assert.equal(
        sha256Hex(body),
        flow.sha256,
        `${flow.flow} ${flow.id}: the asset's bytes are the ones sent`,
      );
      survived += 1;
    }

    // 2. No asset is partial or unverified: each is ready, and its stored bytes hash to its record.
    const assets = dbQuery<{ id: string; sha256: string; size: number; status: string; storage_key: string }>(
      check,
      'select id, sha256, size, status, storage_key from assets',
    );
    for (const asset of assets) {
      assert.equal(asset.status, 'ready', `asset ${asset.id} is ${asset.status}`);
      const res = await fetch(`${check.url}/v1/assets/${asset.id}/content`, {
        headers: { 'x-api-key': key },
      });
      const body = Buffer.from(await res.arrayBuffer());
      assert.equal(res.status, 200, `asset ${asset.id}`);
      assert.equal(body.length, asset.size, `asset ${asset.id}: size`);
      assert.equal(sha256Hex(body), asset.sha256, `asset ${asset.id}: its bytes are whole`);
    }

    // 3. Within the hour, every stored object belongs to an asset or to an upload still open. A
    // completion killed between its commit and the frees that follow it at once (the upload's
    // own bytes, when the account held the content already) leaves them to the job its commit
    // queued, due AFTER_COMMIT_CHECK_MS later: CI once killed a direct upload exactly there.
    clock.advance(AFTER_COMMIT_CHECK_MS + 1000);
    await check.wharf.core.jobs.drain();
    const assetKeys = new Set(assets.map((a) => a.storage_key));
    const openKeys = dbQuery<{ storage_key: string }>(
      check,
      "select storage_key from uploads where status = 'pending'",
    ).map((u) => u.storage_key);
    // tus on S3 keeps `<key>.info` (and `<key>.part`) beside an open upload's parts.
    const belongs = (k: string) => assetKeys.has(k) || openKeys.some((o) => k === o || k.startsWith(`${o}.`));
    const strays = (await storedKeys(server)).filter((k) => !belongs(k));
    assert.deepEqual(
      strays.map((k) => ({
        key: k,
        uploads: dbQuery(check, 'select * from uploads where storage_key = ?', k),
      })),
      [],
      'objects that belong to no asset and no open upload',
    );

    // 4. Once every upload left open has expired (two days on), only the assets' bytes remain:
    // no object, part, temp file or tus leftover of any upload that never finished.
    clock.advance(49 * 3600_000);
    await check.wharf.core.uploads.sweep();
    const left = await storedKeys(server);
    const assetsAfter = new Set(
      dbQuery<{ storage_key: string }>(check, 'select storage_key from assets').map((a) => a.storage_key),
    );
    assert.deepEqual(
      left.filter((k) => !assetsAfter.has(k)),
      [],
      'objects left after the sweep that belong to no asset',
    );
    assert.deepEqual(
      [...assetsAfter].filter((k) => !left.includes(k)),
      [],
      'assets whose bytes are missing',
    );
    assert.deepEqual(await pendingWrites(server), [], 'writes (temp files, multipart uploads) left');
    if (!storesOnS3) {
      assert.deepEqual(await filesUnder(join(dataDir, 'blobs', 'multipart')), [], 'multipart parts left');
      assert.deepEqual(await filesUnder(join(dataDir, 'tus', 'uploads')), [], 'tus files left');
      const meta = (await filesUnder(join(dataDir, 'blobs', 'meta'))).map((m) => m.replace(/\.json$/, ''));
      assert.deepEqual(
        meta.filter((m) => !left.includes(m)),
        [],
        'metadata sidecars of objects that are gone',
      );
    }
    assert.deepEqual(await filesUnder(join(dataDir, 'tus', 'staging')), [], 'staged tus bodies left');
    // On S3, each tus part waits in a file of its process's own directory until it is sent; the
    // directories of the killed processes were removed when the checking server started.
    assert.deepEqual(await filesUnder(join(dataDir, 'tus', 's3-parts')), [], 'tus part files left');

    t.diagnostic(
      `kill rounds figures: ${figures.rounds} rounds (SIGKILL each), ${figures.started} uploads started, ` +
        `${figures.resumed} resumed after a crash, ${figures.recovered} more finished in a last round ` +
        `without a kill, ${figures.acknowledged} acknowledged, ${survived} survived byte ` +
        `for byte, ${figures.interruptedRequests} cut off by a kill, ${figures.refused} refused; ` +
        `${assets.length} assets all ready and whole; ${strays.length} orphaned objects; per flow: ` +
        Object.entries(byFlow)
          .sort()
          .map(([f, n]) => `${f} ${n.acked}/${n.started}`)
          .join(', '),
    );
  } catch (err) {
    if (wharf) t.diagnostic(`the last server's output:\n${wharf.tail()}`);
    throw err;
  } finally {
    await wharf?.kill();
    await later?.close();
    await backing.release();
    await rm(dataDir, { recursive: true, force: true });
  }
});
