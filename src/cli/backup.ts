/** `wharf data backup DIR`: a data directory's copy, taken while the server runs (src/backup/). */
import { join, resolve } from 'node:path';
import { type BackupProblem, BackupRefused, backup, NoWharfSchema } from '../backup/backup.js';
import { databaseSetting } from '../db/setting.js';
import { parseDatabaseUrl } from '../db/url.js';
import { UsageError } from './args.js';
import { type Command, Failure, HELP, schemaBehind } from './command.js';
import { printable } from './format.js';
import { problemJson, problemLine, type StoredBytesProblem } from './problems.js';

export const DATA_COMMANDS: Command[] = [
  {
    name: 'data backup',
    usage: 'wharf data backup DIR [--verify] [--json]',
    summary:
      'Copy the embedded default (the SQLite database and the local store) into DIR, while the server ' +
      'runs: a data directory a server can be started on. Every object is checked against its record as it ' +
      'is copied; run again into the same DIR, only what changed is copied (--verify also re-reads what ' +
      'DIR already holds and copies again what no longer matches). Exits 1 when an asset’s bytes are ' +
      'missing or differ.',
    options: { ...HELP, json: { type: 'boolean' }, verify: { type: 'boolean' } },
    positionals: 1,
    async run({ values, positionals }, ctx) {
      const target = positionals[0];
      if (!target)
        throw new UsageError(
          'Where to? Give the directory to back up into, e.g. "wharf data backup /backups/wharf".',
        );
      const config = ctx.config();
      const database = parseDatabaseUrl(config.databaseUrl);
      if (!('dialect' in database) || database.dialect !== 'sqlite' || config.storage.kind !== 'local') {
        throw new Failure(
          'wharf data backup copies the embedded default (a SQLite database and a local store). With ' +
            'PostgreSQL or S3 storage, back up with their own tools (pg_dump, bucket versioning or ' +
            'replication): see docs/operations.md, "Backups".',
        );
      }
      let report: Awaited<ReturnType<typeof backup>>;
      try {
        report = await backup({
          database: database.path,
          databaseSetting: databaseSetting(ctx.io.env, config).name,
          blobs: join(config.dataDir, 'blobs'),
          dataDir: config.dataDir,
          // The caller's (see callerDirectory), not the package's folder `npm run` runs in.
          target: resolve(ctx.io.cwd ?? process.cwd(), target),
          verify: values.verify === true,
        });
      } catch (err) {
        // Refused as every command refuses a database no Wharf has run on, naming the setting.
        if (err instanceof NoWharfSchema) {
          throw new Failure(schemaBehind({ pending: [], fresh: true }, ctx.io.env, config));
        }
        if (err instanceof BackupRefused) throw new Failure(err.message);
        throw err;
      }
      if (values.json) {
        ctx.io.stdout(
          `${JSON.stringify(
            {
              snapshots: report.snapshots,
              assets: report.assets,
              renderings: report.renderings,
              copied: report.copied,
              copied_bytes: report.copiedBytes,
              kept: report.kept,
              removed: report.removed,
              repaired: report.repaired,
              renderings_left_out: report.renderingsLeftOut,
              problems: report.problems.map((p) => problemJson(reported(p))),
            },
            null,
            2,
          )}\n`,
        );
      } else {
        for (const problem of report.problems) ctx.io.stdout(`${problemLine(reported(problem))}\n`);
        ctx.io.stdout(
          `Backed up ${report.assets} assets and ${report.renderings} renderings into ${printable(target)}: ` +
            `${report.copied} objects copied (${report.copiedBytes} bytes), ${report.kept} kept from an earlier ` +
            `backup, ${report.removed} no longer needed removed` +
            (report.repaired > 0 ? `, ${report.repaired} that no longer matched copied again` : '') +
            '.\n',
        );
      }
      if (report.problems.length > 0) {
        throw new Failure(
          `${report.problems.length} assets' bytes are missing or differ from their records in storage: ` +
            'their records are in the backup, their bytes are not.',
        );
      }
    },
  },
];

/** A backup's problem in the words both reporting commands use. */
function reported({ kind, object, found }: BackupProblem): StoredBytesProblem {
  return {
    kind,
    assetId: object.assetId,
    accountId: object.accountId,
    name: object.name,
    storageKey: object.key,
    recorded: { size: object.size, sha256: object.sha256, md5: object.md5 },
    found,
  };
}
