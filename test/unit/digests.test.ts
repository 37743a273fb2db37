import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { hexToBase64, parseContentMd5, parseDigest } from '../../src/core/digests.js';
import { isWharfError } from '../../src/core/errors.js';

const data = randomBytes(1000);
const sha = createHash('sha256').update(data).digest();
const md5 = createHash('md5').update(data).digest();

function invalid(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isWharfError(err, 'INVALID_DIGEST'), String(err));
    assert.equal(err.status, 400);
    return true;
  });
}

describe('parseDigest: every spelling of one digest gives the same lower-case hex', () => {
  const spellings = (bytes: Buffer): Array<[string, string]> => [
    ['lower-case hex', bytes.toString('hex')],
    ['upper-case hex', bytes.toString('hex').toUpperCase()],
    ['base64', bytes.toString('base64')],
    ['base64 without padding', bytes.toString('base64').replace(/=+$/, '')],
    ['base64url', bytes.toString('base64url')],
    ['surrounding whitespace', `  ${bytes.toString('hex')}\t`],
  ];
  for (const [label, value] of spellings(sha)) {
    test(`sha256 as ${label}`, () =>
      assert.equal(parseDigest('sha256', value, 'sha256'), sha.toString('hex')));
  }
  for (const [label, value] of spellings(md5)) {
    test(`md5 as ${label}`, () => assert.equal(parseDigest('md5', value, 'md5'), md5.toString('hex')));
  }

  test('a digest whose base64 contains + and / decodes with the standard alphabet', () => {
    // Find bytes whose base64 has both, so the alphabet choice matters.
    let bytes = randomBytes(32);
    while (!/[+/]/.test(bytes.toString('base64'))) bytes = randomBytes(32);
    assert.equal(parseDigest('sha256', bytes.toString('base64'), 'sha256'), bytes.toString('hex'));
  });
});

describe('parseDigest refuses anything that is not exactly one digest', () => {
  const cases: Array<[string, 'sha256' | 'md5', string]> = [
    ['empty', 'sha256', ''],
    ['not hex nor base64', 'sha256', 'z'.repeat(64) + '!'],
    ['hex one character short', 'sha256', sha.toString('hex').slice(0, 63)],
    ['hex one byte long', 'sha256', sha.toString('hex') + 'ab'],
    ['an MD5 given as SHA-256', 'sha256', md5.toString('hex')],
    ['a SHA-256 given as MD5', 'md5', sha.toString('hex')],
    ['base64 of 31 bytes', 'sha256', sha.subarray(1).toString('base64')],
    ['base64 of 33 bytes', 'sha256', Buffer.concat([sha, Buffer.from([1])]).toString('base64')],
    ['inner whitespace', 'sha256', `${sha.toString('hex').slice(0, 32)} ${sha.toString('hex').slice(32)}`],
    ['an RFC 9530 field instead of a value', 'sha256', `sha-256=:${sha.toString('base64')}:`],
    ['a prefixed hex', 'md5', `0x${md5.toString('hex')}`],
  ];
  for (const [label, algorithm, value] of cases) {
    test(label, () => invalid(() => parseDigest(algorithm, value, algorithm)));
  }

  test('the error message names the field the client used', () => {
    assert.throws(
      () => parseDigest('sha256', 'nope', 'x-amz-checksum-sha256'),
      (err: unknown) => isWharfError(err) && err.message.includes('x-amz-checksum-sha256'),
    );
  });
});

describe('parseContentMd5 (RFC 1864: base64 of the 16 bytes, nothing else)', () => {
  test('base64 gives hex', () => assert.equal(parseContentMd5(md5.toString('base64')), md5.toString('hex')));
  test('hex is refused, since the header is base64 by definition', () =>
    invalid(() => parseContentMd5(md5.toString('hex'))));
  test('a SHA-256 in base64 is refused', () => invalid(() => parseContentMd5(sha.toString('base64'))));
  test('empty is refused', () => invalid(() => parseContentMd5('')));
  test('garbage is refused', () => invalid(() => parseContentMd5('not base64 at all!')));
});

describe('hexToBase64', () => {
  test('matches what crypto gives for the same digest', () => {
    assert.equal(hexToBase64(sha.toString('hex')), sha.toString('base64'));
    assert.equal(hexToBase64(md5.toString('hex')), md5.toString('base64'));
  });
  test('round-trips through parseDigest', () => {
    const hex = sha.toString('hex');
    assert.equal(parseDigest('sha256', hexToBase64(hex), 'sha256'), hex);
  });
});
