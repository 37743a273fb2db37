/** `wharf placeholders backfill`: placeholders for images processed before Wharf made them. */
import { accountOption, type Command, chosenAccounts, HELP } from './command.js';

export const PLACEHOLDER_COMMANDS: Command[] = [
  {
    name: 'placeholders backfill',
    usage: 'wharf placeholders backfill [--account ID] [--json]',
    summary:
      'Queue processing again for images (and video and PDF previews) that have no placeholder yet: ' +
      'those processed before placeholders existed. The server makes them in the background.',
    options: { ...HELP, account: { type: 'string' }, json: { type: 'boolean' } },
    positionals: 0,
    async run({ values }, ctx) {
      const accountId = accountOption(values);
      const { core, store } = await ctx.open();
      const accounts = await chosenAccounts(store, accountId);
      const { scanned, queued } = await core.placeholders.queueMissing(accounts);
      if (values.json) {
        ctx.io.stdout(`${JSON.stringify({ scanned, queued }, null, 2)}\n`);
        return;
      }
      ctx.io.stdout(
        queued === 0
          ? `Looked at ${scanned} assets: none is missing a placeholder it could have.\n`
          : `Looked at ${scanned} assets; queued ${queued} for processing again. A running server makes ` +
              'their placeholders in the background (jobs "process-asset"), and sends asset.processed for each.\n',
      );
    },
  },
];
