import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { describe, test } from 'node:test';
import { parseDictionary } from 'structured-headers';
import { isWharfError } from '../../src/core/errors.js';
import {
  completeHeader,
  declaredLength,
  dialectOf,
  reprDigest,
  requestedComplete,
  requestedOffset,
  uploadLimit,
  wantsSha256ReprDigest,
} from '../../src/http/rufh/protocol.js';

// The draft's fields as structured fields (RFC 9651): what counts as a value and what is
// ignored, per interop version.

describe('interop versions', () => {
  test('each version Wharf speaks is answered in its own spelling', () => {
    const of = (version: string) => dialectOf({ 'upload-draft-interop-version': version });
    assert.deepEqual(of('3'), { version: 3, incomplete: true, ageKey: 'expires', partialUploadType: false });
    assert.deepEqual(of('4'), { version: 4, incomplete: false, ageKey: 'expires', partialUploadType: false });
    assert.deepEqual(of('5'), { version: 5, incomplete: false, ageKey: 'expires', partialUploadType: false });
    assert.deepEqual(of('6'), { version: 6, incomplete: false, ageKey: 'expires', partialUploadType: true });
    for (const v of ['7', '8', '9']) {
      assert.deepEqual(of(v), {
        version: Number(v),
        incomplete: false,
        ageKey: 'max-age',
        partialUploadType: true,
      });
    }
  });

  test('none, an unknown one or a malformed one: no version (so no 104), the latest spelling', () => {
    for (const value of [undefined, '2', '10', 'eight', '8.0', '?1', '8, 9']) {
      const headers: IncomingHttpHeaders =
        value === undefined ? {} : { 'upload-draft-interop-version': value };
      const dialect = dialectOf(headers);
      assert.equal(dialect.version, undefined, String(value));
      assert.equal(dialect.ageKey, 'max-age');
      assert.equal(dialect.incomplete, false);
    }
  });
});

describe('fields', () => {
  test('Upload-Complete and interop 3’s Upload-Incomplete; anything but a Boolean is ignored', () => {
    assert.equal(requestedComplete({ 'upload-complete': '?1' }), true);
    assert.equal(requestedComplete({ 'upload-complete': '?0' }), false);
    assert.equal(requestedComplete({ 'upload-incomplete': '?1' }), false);
    assert.equal(requestedComplete({ 'upload-incomplete': '?0' }), true);
    for (const value of ['1', 'true', '?2', '', '?1, ?0']) {
      assert.equal(requestedComplete({ 'upload-complete': value }), undefined, value);
    }
    assert.equal(requestedComplete({}), undefined);
    assert.deepEqual(completeHeader(dialectOf({ 'upload-draft-interop-version': '3' }), false), [
      'Upload-Incomplete',
      '?1',
    ]);
    assert.deepEqual(completeHeader(dialectOf({}), true), ['Upload-Complete', '?1']);
  });

  test('Upload-Offset is a non-negative Integer or a refusal', () => {
    assert.equal(requestedOffset({ 'upload-offset': '25000000' }), 25_000_000);
    assert.equal(requestedOffset({ 'upload-offset': '0' }), 0);
    for (const value of ['-1', '1.5', 'abc', '', '999999999999999999']) {
      assert.throws(
        () => requestedOffset({ 'upload-offset': value }),
        (err: unknown) => isWharfError(err, 'VALIDATION_FAILED'),
        value,
      );
    }
  });

  test('the length: Upload-Length, or Content-Length of the whole file; disagreeing ones refused', () => {
    assert.equal(declaredLength({ 'upload-length': '100' }, false), 100);
    assert.equal(declaredLength({ 'content-length': '100' }, true), 100);
    assert.equal(declaredLength({ 'content-length': '100' }, false), undefined, 'a first part says nothing');
    assert.equal(declaredLength({ 'upload-length': '100', 'content-length': '40' }, false), 100);
    const inconsistent = (err: unknown) => isWharfError(err, 'INCONSISTENT_LENGTH');
    assert.throws(
      () => declaredLength({ 'upload-length': '100', 'content-length': '40' }, true),
      inconsistent,
    );
    assert.throws(
      () => declaredLength({ 'upload-length': '10', 'content-length': '40' }, false),
      inconsistent,
    );
    // Sent but unreadable is refused, not taken for absent (h92: a 16-digit length was 411).
    assert.throws(
      () => declaredLength({ 'upload-length': 'ten' }, false),
      (err: unknown) => isWharfError(err, 'VALIDATION_FAILED'),
    );
    assert.throws(
      () => declaredLength({ 'upload-length': '1000000000000000' }, false),
      (err: unknown) => isWharfError(err, 'FILE_TOO_LARGE'),
    );
  });

  test('Upload-Limit is a Dictionary a client parses back; Repr-Digest a byte sequence', () => {
    const limit = parseDictionary(
      uploadLimit(dialectOf({ 'upload-draft-interop-version': '8' }), {
        maxSize: 1234567890,
        maxAppendSize: 104857600,
        maxAge: 3600,
      }),
    );
    assert.deepEqual(
      [...limit].map(([k, [v]]) => [k, v]),
      [
        ['max-size', 1234567890],
        ['max-append-size', 104857600],
        ['max-age', 3600],
      ],
    );
    const v6 = uploadLimit(dialectOf({ 'upload-draft-interop-version': '6' }), {
      maxSize: 1,
      maxAppendSize: 2,
      maxAge: 3,
    });
    assert.equal(v6, 'max-size=1, max-append-size=2, expires=3');
    const hex = 'ab'.repeat(32);
    const [bytes] = parseDictionary(reprDigest(hex)).get('sha-256')!;
    assert.equal(Buffer.from(bytes as ArrayBuffer).toString('hex'), hex);
  });
});

describe('Want-Repr-Digest', () => {
  test('SHA-256 unless the client says it is not acceptable (0)', () => {
    const wants = (value?: string) =>
      wantsSha256ReprDigest(value === undefined ? {} : { 'want-repr-digest': value });
    assert.equal(wants(), true);
    assert.equal(wants('sha-256=10'), true);
    assert.equal(wants('sha-512=3'), true, 'another preference: SHA-256 is what Wharf has');
    assert.equal(wants('sha-512=10, sha-256=1'), true);
    assert.equal(wants('sha-256=0'), false);
    assert.equal(wants('sha-256=0, sha-512=3'), false);
    assert.equal(wants('sha-256=(0'), true, 'a field that does not parse says nothing');
  });
});
