import { ConfigError } from '../config.js';

/**
 * The database was migrated by a newer Wharf: `unknown` names the migrations this version does
 * not know. A ConfigError whose own problem names WHARF_DATABASE_URL; the server's start
 * (main.ts) and the admin CLI (cli/command.ts) say `refusal` instead, naming the setting the
 * operator used (db/setting.ts). A module of its own, light, so that main.ts can tell it
 * without loading the migrations.
 */
export class SchemaAhead extends ConfigError {
  constructor(readonly unknown: string[]) {
    super(newerSchema(unknown, 'WHARF_DATABASE_URL'));
  }

  /** The refusal, beginning with `label`: the setting that chose the database. */
  refusal(label: string): string {
    return newerSchema(this.unknown, label);
  }
}

function newerSchema(unknown: string[], label: string): string {
  return `${label}: this database was migrated by a newer Wharf (${unknown.join(', ')}), which this version does not know. Run that version or a later one; to go back, restore the backup taken before the upgrade.`;
}
