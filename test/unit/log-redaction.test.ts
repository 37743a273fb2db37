import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redactedUrl } from '../../src/http/log-redaction.js';

// What a request log shows of a URL (src/http/log-redaction.ts); logging.test.ts checks the same
// through a server's real log lines.
const KEY = `wharf_${'Ab3_-x'.repeat(7)}A`;

test('a Wharf key anywhere in a query value is redacted, however the value is escaped', () => {
  const cases: Array<[string, string]> = [
    [`api_key=${KEY}`, 'api_key=REDACTED'],
    [`q=${KEY}`, 'q=REDACTED'],
    [`h=Bearer%20${KEY}`, 'h=REDACTED'],
    [`h=Bearer+${KEY}`, 'h=REDACTED'],
    [`f=key:${KEY}`, 'f=REDACTED'],
    // An escape that does not decode leaves the value as sent: the key is found in that text.
    [`b=Bearer%20${KEY}%zz`, 'b=REDACTED'],
    // Encoded twice: once decoded, an escape still stands before it.
    [`d=x%2520${KEY}`, 'd=REDACTED'],
  ];
  for (const [query, shown] of cases) {
    assert.equal(redactedUrl(`/v1/assets?limit=1&${query}`), `/v1/assets?limit=1&${shown}`, query);
  }
});

test('a parameter named by a key is redacted whole', () => {
  assert.equal(redactedUrl(`/v1/assets?${KEY}`), '/v1/assets?REDACTED');
  assert.equal(redactedUrl(`/v1/assets?limit=2&${KEY}=1`), '/v1/assets?limit=2&REDACTED');
});

test('names that merely contain wharf_ stay as they are', () => {
  for (const query of ['name=project-wharf_notes.txt', 'name=wharf_logo.png', 'prefix=a%20wharf_b']) {
    assert.equal(redactedUrl(`/v1/assets?${query}`), `/v1/assets?${query}`);
  }
});
