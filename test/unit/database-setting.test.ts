import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { SchemaAhead } from '../../src/db/schema-ahead.js';
import { databaseSetting } from '../../src/db/setting.js';

// How the server's and the CLI's messages about the database name it: by the setting the
// operator used, never by one they did not set.
describe('databaseSetting', () => {
  const dataDir = resolve('/srv/wharf-data');

  test('the embedded default (WHARF_DATABASE_URL unset, or empty): WHARF_DATA_DIR, with the SQLite file in it', () => {
    for (const env of [{ WHARF_DATA_DIR: dataDir }, { WHARF_DATA_DIR: dataDir, WHARF_DATABASE_URL: '' }]) {
      const setting = databaseSetting(env, loadConfig(env));
      assert.deepEqual(setting, {
        name: 'WHARF_DATA_DIR',
        label: `WHARF_DATA_DIR (${join(dataDir, 'wharf.db')})`,
      });
      const refusal = new SchemaAhead(['999_from_a_later_wharf']).refusal(setting.label);
      assert.ok(
        refusal.startsWith(
          `WHARF_DATA_DIR (${join(dataDir, 'wharf.db')}): this database was migrated by a newer Wharf (999_from_a_later_wharf)`,
        ),
      );
      assert.doesNotMatch(refusal, /WHARF_DATABASE_URL/);
    }
  });

  test('WHARF_DATABASE_URL set (the scaled deployment, or a SQLite file elsewhere): WHARF_DATABASE_URL', () => {
    for (const url of [
      'postgres://wharf:secret@db.internal:5432/wharf',
      `sqlite://${join(dataDir, 'elsewhere.db')}`,
    ]) {
      const env = { WHARF_DATA_DIR: dataDir, WHARF_DATABASE_URL: url };
      const setting = databaseSetting(env, loadConfig(env));
      assert.deepEqual(setting, { name: 'WHARF_DATABASE_URL', label: 'WHARF_DATABASE_URL' });
      const refusal = new SchemaAhead(['999_from_a_later_wharf']).refusal(setting.label);
      assert.ok(refusal.startsWith('WHARF_DATABASE_URL: this database was migrated by a newer Wharf'));
      assert.doesNotMatch(refusal, /secret/, 'the URL itself is not said');
    }
  });
});
