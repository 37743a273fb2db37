import assert from 'node:assert/strict';
import { test } from 'node:test';
import { typeFromName } from '../../src/sdk/media-types.js';

// A file read from disk (the CLI, the SDK's fileSource, the seed APIs whose clients send no
// type) is typed by its name's extension, from mime-db, as a browser types a File.
test('types a name by its extension, whatever its case, from mime-db', () => {
  assert.equal(typeFromName('photo.PNG'), 'image/png');
  assert.equal(typeFromName('scan.psd'), 'image/vnd.adobe.photoshop');
  assert.equal(typeFromName('book.epub'), 'application/epub+zip');
  assert.equal(typeFromName('archive.tar.gz'), 'application/gzip');
});

test('where mime-db and browsers differ, as browsers type it', () => {
  assert.equal(typeFromName('old-camera.jfif'), 'image/jpeg');
  assert.equal(typeFromName('song.flac'), 'audio/flac');
});

test('a name without an extension, or with one nobody knows, stays untyped', () => {
  assert.equal(typeFromName('txt'), undefined);
  assert.equal(typeFromName('README'), undefined);
  assert.equal(typeFromName('data.zzq'), undefined);
  assert.equal(typeFromName('trailing.'), undefined);
});
