/**
 * `wharf migrate`: the database brought to this version's schema, as a deploy step of its own.
 * The other admin commands never migrate (see OpenCoreOptions in bootstrap.ts): migrating is an
 * upgrade, and every node of an older version running on the database stops at its next sweep.
 */
import { type Command, Failure, HELP, schemaAhead } from './command.js';

export const MIGRATE_COMMANDS: Command[] = [
  {
    name: 'migrate',
    usage: 'wharf migrate [--json]',
    summary:
      'Run the database migrations of this version that the database has not had, and name them: what ' +
      'the server does at its start. Nodes of an older version still running on the database stop at ' +
      'their next sweep: stop them first (docs/deployment.md, "Starting": upgrading).',
    options: { ...HELP, json: { type: 'boolean' } },
    positionals: 0,
    async run({ values }, ctx) {
      ctx.checkDatabase();
      // Only the database: no storage, no secret, nothing of the core (it expects the schema).
      const [{ connect }, { migrateToLatest, MIGRATIONS, SchemaAhead }] = await Promise.all([
        import('../db/connect.js'),
        import('../db/migrate.js'),
      ]);
      const { db } = connect(ctx.config().databaseUrl);
      let applied: string[];
      try {
        applied = await migrateToLatest(db);
      } catch (err) {
        // Named as every command names the database it refuses.
        if (err instanceof SchemaAhead) throw new Failure(schemaAhead(err, ctx.io.env, ctx.config()));
        throw err;
      } finally {
        await db.destroy();
      }
      const schema = MIGRATIONS.at(-1);
      if (values.json) {
        ctx.io.stdout(`${JSON.stringify({ applied, schema }, null, 2)}\n`);
        return;
      }
      ctx.io.stdout(
        applied.length === 0
          ? `Nothing to migrate: the database is at ${schema}, the latest migration of this version.\n`
          : `Applied ${applied.length} migration${applied.length === 1 ? '' : 's'}: ${applied.join(', ')}. ` +
              `The database is at ${schema}.\n`,
      );
    },
  },
];
