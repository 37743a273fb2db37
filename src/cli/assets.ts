/** `wharf assets verify`: every stored asset read back and checked against its record. */
import type { IntegrityProblem } from '../core/integrity.js';
import { accountOption, type Command, chosenAccounts, Failure, HELP } from './command.js';
import { printable } from './format.js';

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
        onProblem: values.json ? undefined : (problem) => ctx.io.stdout(`${problemLine(problem)}\n`),
      });
      const { checked, bytes, skipped, problems } = report;
      if (values.json) {
        ctx.io.stdout(
          `${JSON.stringify({ checked, bytes, skipped, problems: problems.map(problemJson) }, null, 2)}\n`,
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

const WHAT: Record<IntegrityProblem['kind'], string> = {
  missing: 'MISSING',
  size_mismatch: 'SIZE MISMATCH',
  checksum_mismatch: 'CHECKSUM MISMATCH',
};

function problemLine({ kind, asset, found }: IntegrityProblem): string {
  const detail =
    kind === 'missing' || !found
      ? `storage holds no object under ${asset.storageKey}`
      : kind === 'size_mismatch'
        ? `stored ${found.size} bytes, recorded ${asset.size}`
        : `stored SHA-256 ${found.sha256}, recorded ${asset.sha256}`;
  return printable(`${WHAT[kind]}  ${asset.id}  ${asset.accountId}  ${asset.name}: ${detail}`);
}

function problemJson({ kind, asset, found }: IntegrityProblem) {
  return {
    problem: kind,
    asset_id: asset.id,
    account_id: asset.accountId,
    name: asset.name,
    storage_key: asset.storageKey,
    recorded: { size: asset.size, sha256: asset.sha256, md5: asset.md5 },
    stored: found ? { size: found.size, sha256: found.sha256, md5: found.md5 } : null,
  };
}
