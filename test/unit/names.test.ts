import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isWharfError } from '../../src/core/errors.js';
import {
  DEFAULT_CONTENT_TYPE,
  validateContentType,
  validateFileName,
  validateTypeFilter,
} from '../../src/core/names.js';

function refusedAs(code: string, fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isWharfError(err), `expected a WharfError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.status, 400);
    return true;
  });
}

describe('validateFileName accepts ordinary and international names unchanged', () => {
  const good = [
    'report.pdf',
    'résumé 📄.pdf',
    // An emoji's variation selector is not a hidden character.
    '\u2764\uFE0F.png',
    "Ünïcödé – “quotes” 'and' ‘more’.txt",
    '日本語のファイル名.png',
    'a name with  two spaces',
    '.hidden',
    '...',
    'archive.tar.gz',
    'semi;colon,comma=equals.txt',
    'double"quote.txt',
    '%2e%2e%2fencoded-but-literal',
    'x'.repeat(255),
  ];
  for (const name of good) {
    test(JSON.stringify(name), () => {
      assert.equal(validateFileName(name), name);
    });
  }

  test('a name of exactly 255 UTF-8 bytes of multi-byte characters is accepted', () => {
    const name = 'é'.repeat(127) + 'x'; // 254 + 1 bytes
    assert.equal(Buffer.byteLength(name), 255);
    assert.equal(validateFileName(name), name);
  });

  test('names are normalised to NFC, so the same visible name is one name', () => {
    const decomposed = 're\u0301sume\u0301.pdf';
    assert.notEqual(decomposed, 'résumé.pdf');
    assert.equal(validateFileName(decomposed), 'résumé.pdf');
  });
});

describe('validateFileName refuses names that could mislead or break headers, logs or paths', () => {
  const bad: Array<[string, string]> = [
    ['empty', ''],
    ['blank', '   '],
    ['NUL', 'a\u0000b.txt'],
    ['CR', 'a\rb.txt'],
    ['LF', 'a\nb.txt'],
    ['CRLF header injection', 'a.txt\r\nSet-Cookie: x=1'],
    ['TAB', 'a\tb.txt'],
    ['ESC (terminal escapes)', '\u001b[31mred.txt'],
    ['DEL', 'a\u007fb.txt'],
    ['C1 control (NEL)', 'a\u0085b.txt'],
    ['right-to-left override', 'invoice\u202Efdp.exe'],
    ['left-to-right override', 'a\u202Db.txt'],
    ['right-to-left isolate', 'a\u2067b.txt'],
    ['zero-width space', 'pay\u200bpal.pdf'],
    ['zero-width joiner', 'a\u200db.txt'],
    ['word joiner', 'a\u2060b.txt'],
    ['byte-order mark', '\ufeffa.txt'],
    ['Hangul filler alone (looks blank)', '\u3164'],
    ['Hangul choseong filler', 'a\u115Fb.txt'],
    ['soft hyphen', 'pay\u00ADpal.pdf'],
    ['combining grapheme joiner', 'a\u034Fb.txt'],
    ['tag character', 'a\u{E0001}b.txt'],
    ['paragraph separator', 'a\u2029b.txt'],
    ['lone high surrogate', 'a\ud800b.txt'],
    ['lone low surrogate', '\udc00.txt'],
    ['line separator', 'a\u2028b.txt'],
    ['slash', 'dir/file.txt'],
    ['backslash', 'dir\\file.txt'],
    ['parent traversal', '../etc/passwd'],
    ['windows traversal', '..\\..\\windows\\system32'],
    ['absolute path', '/etc/passwd'],
    ['dot', '.'],
    ['dot dot', '..'],
    ['256 ASCII bytes', 'x'.repeat(256)],
    ['256 bytes of two-byte characters', 'é'.repeat(128)],
    ['256 bytes of emoji', '📄'.repeat(64)],
    ['far too long', 'x'.repeat(100_000)],
  ];
  for (const [label, name] of bad) {
    test(label, () => refusedAs('INVALID_NAME', () => validateFileName(name)));
  }

  test('the byte limit is counted after NFC normalisation, in UTF-8 bytes', () => {
    // 128 × "e + combining acute" is 384 bytes decomposed but 256 bytes composed: still too long.
    refusedAs('INVALID_NAME', () => validateFileName('e\u0301'.repeat(128)));
    // 127 of them compose to 254 bytes: fine, even though the raw input was 381 bytes.
    assert.equal(validateFileName('e\u0301'.repeat(127)), 'é'.repeat(127));
  });
});

describe('validateContentType', () => {
  test('absent or empty means application/octet-stream', () => {
    assert.equal(validateContentType(undefined), DEFAULT_CONTENT_TYPE);
    assert.equal(validateContentType(null), DEFAULT_CONTENT_TYPE);
    assert.equal(validateContentType(''), 'application/octet-stream');
  });

  test('valid media types are kept, lower-cased and trimmed', () => {
    assert.equal(validateContentType('image/png'), 'image/png');
    assert.equal(validateContentType(' Image/PNG '), 'image/png');
    assert.equal(validateContentType('text/plain; charset=utf-8'), 'text/plain; charset=utf-8');
    assert.equal(validateContentType('application/vnd.api+json'), 'application/vnd.api+json');
    assert.equal(validateContentType('text/plain;format="flowed"'), 'text/plain;format="flowed"');
  });

  const bad: Array<[string, string]> = [
    ['no subtype', 'text'],
    ['empty subtype', 'text/'],
    ['space in type', 'te xt/plain'],
    ['header injection', 'text/html\r\nX-Evil: 1'],
    // Whitespace around ";" is OWS, spaces and tabs: a line break there is no header value.
    ['a line break before a parameter', 'text/html\r\n;x=y'],
    ['a Unicode space before a parameter', 'text/html\u00a0;x=y'],
    ['NUL', 'text/plain\u0000'],
    ['two slashes', 'a/b/c'],
    ['non-ASCII', 'text/plaín'],
    ['over 255 characters', `application/${'x'.repeat(300)}`],
    ['unterminated quoted parameter', 'text/plain; a="b'],
  ];
  for (const [label, value] of bad) {
    test(`refuses ${label}`, () => refusedAs('INVALID_CONTENT_TYPE', () => validateContentType(value)));
  }
});

describe('validateTypeFilter', () => {
  test('a type is matched without its parameters, in lower case', () => {
    assert.equal(validateTypeFilter('text/csv'), 'text/csv');
    assert.equal(validateTypeFilter(' TEXT/CSV '), 'text/csv');
    assert.equal(validateTypeFilter('text/csv;charset=utf-8'), 'text/csv');
    assert.equal(validateTypeFilter('text/csv ; charset=UTF-8'), 'text/csv');
  });

  test('a family stays a family; */* is no filter', () => {
    assert.equal(validateTypeFilter('Image/*'), 'image/*');
    assert.equal(validateTypeFilter('*/*'), undefined);
  });

  for (const value of ['*/csv', '*/*x', 'text', 'text/csv; charset', 'text/csv\r\n;x=y']) {
    test(`refuses ${JSON.stringify(value)}`, () =>
      refusedAs('INVALID_CONTENT_TYPE', () => validateTypeFilter(value)));
  }
});
