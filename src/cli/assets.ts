/** `wharf assets verify`: every stored asset read back and checked against its record. */
import type { IntegrityProblem } from '../core/integrity.js';
import { accountOption, type Command, chosenAccounts, Failure, HELP } from './command.js';
import { problemJson, problemLine, type StoredBytesProblem } from './problems.js';

export const ASSET_COMMANDS: Command[] = [
  {
    name: 'assets verify',
    usage: 'wharf assets verify [--account ID] [--json]',
    summary:
      'Read every stored asset (of one account, or of all) back from storage and check its size, SHA-256 ' +
      'and MD5 against what Wharf recorded. Exits 1 when any is missing or differs.',
    options: { ...HELP, account: { type: 'string' }, json: { type: 'boolean' } },
    positionals: 0,
    async run({ values }, ctx) {
      const accountId = accountOption(values);
      const { core, store } = await ctx.open();
      const accounts = await chosenAccounts(store, accountId);
      const report = await core.integrity.verify(accounts, {
        // A long check says what it finds as it goes.
        onProblem: values.json
          ? undefined
          : (problem) => ctx.io.stdout(`${problemLine(reported(problem))}\n`),
      });
      const { checked, bytes, skipped, problems } = report;
      if (values.json) {
        ctx.io.stdout(
          `${JSON.stringify({ checked, bytes, skipped, problems: problems.map((p) => problemJson(reported(p))) }, null, 2)}\n`,
        );
      } else {
        const still = skipped > 0 ? ` ${skipped} still being verified by the server were not read.` : '';
        ctx.io.stdout(
          problems.length === 0
            ? `Checked ${checked} assets (${bytes} bytes): every one matches its record.${still}\n`
            : `Checked ${checked} assets (${bytes} bytes).${still}\n`,
        );
      }
      if (problems.length > 0) {
        throw new Failure(`${problems.length} of ${checked} assets do not match their records.`);
      }
    },
  },
];

/** An integrity problem in the words both reporting commands use. */
function reported({ kind, asset, found }: IntegrityProblem): StoredBytesProblem {
  return {
    kind,
    assetId: asset.id,
    accountId: asset.accountId,
    name: asset.name,
    storageKey: asset.storageKey,
    recorded: { size: asset.size, sha256: asset.sha256, md5: asset.md5 },
    found,
  };
}
