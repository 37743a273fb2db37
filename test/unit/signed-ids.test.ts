import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { isWharfError } from '../../src/core/errors.js';
import { SignedIds } from '../../src/core/signed-ids.js';

const ids = new SignedIds(randomBytes(32));

function invalid(purpose: string, token: string): void {
  assert.throws(
    () => ids.verify(purpose, token),
    (err: unknown) => {
      assert.ok(isWharfError(err, 'INVALID_SIGNATURE'), `expected INVALID_SIGNATURE, got ${String(err)}`);
      return true;
    },
    `token ${JSON.stringify(token)} for ${purpose}`,
  );
}

/** The token with one character of `part` (body or mac) replaced by a different one. */
function flip(token: string, part: 'body' | 'mac', at = 3): string {
  const sep = token.lastIndexOf('--');
  const body = token.slice(0, sep);
  const mac = token.slice(sep + 2);
  const change = (s: string) => {
    const i = at % s.length;
    const next = s[i] === 'A' ? 'B' : 'A';
    return s.slice(0, i) + next + s.slice(i + 1);
  };
  return part === 'body' ? `${change(body)}--${mac}` : `${body}--${change(mac)}`;
}

describe('SignedIds', () => {
  test('verify returns the id sign was given, for the same purpose', () => {
    for (const id of ['1', 'asset-42', '0190f3c2-7a1b-7c3d-8e4f-a1b2c3d4e5f6', 'ünïcode/—id', '']) {
      const token = ids.sign('blob', id);
      assert.equal(ids.verify('blob', token), id);
    }
  });

  test('a token from another key is refused', () => {
    const other = new SignedIds(randomBytes(32));
    const token = ids.sign('blob', 'asset-1');
    assert.notEqual(other.sign('blob', 'asset-1'), token);
    assert.throws(
      () => other.verify('blob', token),
      (err: unknown) => isWharfError(err, 'INVALID_SIGNATURE'),
    );
  });

  test('a token of a previous key still verifies; tokens are made with the current key only', () => {
    const oldKey = randomBytes(32);
    const before = new SignedIds(oldKey).sign('blob', 'asset-1');
    const rotated = new SignedIds(randomBytes(32), [oldKey]);
    assert.equal(rotated.verify('blob', before), 'asset-1');
    assert.notEqual(rotated.sign('blob', 'asset-1'), before);
    assert.throws(
      () => rotated.verify('upload', before),
      (err: unknown) => isWharfError(err, 'INVALID_SIGNATURE'),
      'still bound to its purpose',
    );
  });

  test('a changed body is refused, even one that still decodes to another id', () => {
    const token = ids.sign('blob', 'asset-1');
    for (let at = 0; at < 12; at += 1) invalid('blob', flip(token, 'body', at));
    // A well-formed body for a different id, with the original mac.
    const mac = token.slice(token.lastIndexOf('--') + 2);
    const forged = Buffer.from(JSON.stringify({ _wharf: { id: 'asset-2', pur: 'blob' } })).toString(
      'base64url',
    );
    invalid('blob', `${forged}--${mac}`);
  });

  test('a changed mac is refused', () => {
    const token = ids.sign('blob', 'asset-1');
    for (let at = 0; at < 64; at += 7) invalid('blob', flip(token, 'mac', at));
    invalid('blob', `${token.slice(0, token.lastIndexOf('--'))}--${'0'.repeat(64)}`);
    invalid('blob', `${token}0`);
    invalid('blob', token.toUpperCase());
  });

  test('a token made for one purpose does not pass for another', () => {
    const token = ids.sign('blob', 'asset-1');
    invalid('blob_id', token);
    invalid('Blob', token);
    invalid('', token);
    assert.equal(ids.verify('blob', token), 'asset-1');
  });

  test('truncated tokens are refused', () => {
    const token = ids.sign('blob', 'asset-1');
    for (const cut of [1, 2, 10, 64, 65, 66, token.length - 1]) invalid('blob', token.slice(0, -cut));
    invalid('blob', token.slice(5));
    invalid('blob', token.slice(0, token.lastIndexOf('--')));
    invalid('blob', token.slice(token.lastIndexOf('--')));
  });

  test('garbage is refused with INVALID_SIGNATURE, never another error', () => {
    const token = ids.sign('blob', 'asset-1');
    const mac = token.slice(token.lastIndexOf('--') + 2);
    for (const garbage of [
      '',
      '--',
      '----',
      'x',
      'not a token at all',
      '%00--%00',
      '\u0000',
      'eyJ--',
      `--${mac}`,
      `${'A'.repeat(10_000)}--${mac}`,
      'é--é',
    ]) {
      invalid('blob', garbage);
    }
  });

  test('a validly signed body that is not the expected JSON shape is refused', () => {
    // Signed with the right key but not by `sign`: only the shape check stands in the way.
    const key = randomBytes(32);
    const signer = new SignedIds(key);
    const make = (value: unknown) => {
      const body = Buffer.from(JSON.stringify(value)).toString('base64url');
      return `${body}--${createHmac('sha256', key).update(body).digest('hex')}`;
    };
    assert.equal(signer.verify('blob', make({ _wharf: { id: 'x', pur: 'blob' } })), 'x');
    for (const value of [
      {},
      42,
      'str',
      { _wharf: null },
      { _wharf: { id: 7, pur: 'blob' } },
      { _wharf: { id: 'x' } },
      { _wharf: { pur: 'blob' } },
    ]) {
      assert.throws(
        () => signer.verify('blob', make(value)),
        (err: unknown) => isWharfError(err, 'INVALID_SIGNATURE'),
        JSON.stringify(value),
      );
    }
  });
});
