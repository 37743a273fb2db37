/**
 * The SDK's hand-written types (src/sdk/types.ts) against the server's route schemas of the same
 * name: each must accept exactly what the other accepts, checked by the compiler (tsc runs in the
 * test command), so the two cannot drift apart. The test body only makes the file a test.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Static } from '@fastify/type-provider-typebox';
import type { EventSchema } from '../../src/http/api/event-json.js';
import type { KeyListSchema } from '../../src/http/api/keys.js';
import type { AssetSchema, UploadStateSchema } from '../../src/http/api/schemas.js';
import type { UploadTokenSchema } from '../../src/http/api/tokens.js';
import type { WebhookSchema } from '../../src/http/api/webhook-json.js';
import type * as Sdk from '../../src/sdk/types.js';

/** true only when A and B are mutually assignable. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const same = <A, B>(verdict: Same<A, B>) => verdict;

test('the SDK’s types and the server’s schemas of the same name agree', () => {
  const checks: true[] = [
    same<Sdk.Asset, Static<typeof AssetSchema>>(true),
    same<Sdk.UploadToken, Static<typeof UploadTokenSchema>>(true),
    same<Sdk.Webhook, Static<typeof WebhookSchema>>(true),
    same<Sdk.WharfEvent, Static<typeof EventSchema>>(true),
    same<Sdk.Upload, Static<typeof UploadStateSchema>>(true),
    same<Sdk.KeyList, Static<typeof KeyListSchema>>(true),
  ];
  assert.equal(checks.length, 6);
});
