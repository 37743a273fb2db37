#!/usr/bin/env node
/**
 * The `wharf` command of the SDK package (sdk/package.json), for machines that talk to a Wharf
 * server and run none: the client commands only (upload, sync, ls, get, rm, login). The admin commands
 * open the server's database, so they come with the server (src/cli/main.ts); this entry must
 * import nothing of the server's, or the package would not build.
 */
import { tuneGarbageCollector } from '../gc-tuning.js';
import { processIo } from './io.js';
import { CLIENT_EXIT_CODES, clientUsage, isClientCommand, runClient } from './upload/main.js';

// Installed from the package, this may run on any Node: say what it needs before a command
// fails on what an older one lacks (fs.glob, for one).
const MIN_NODE_MAJOR = 22;
if (Number(process.versions.node.split('.')[0]) < MIN_NODE_MAJOR) {
  process.stderr.write(`wharf: needs Node.js ${MIN_NODE_MAJOR} or later; this is ${process.version}.\n`);
  process.exit(1);
}

// The uploader reads and hashes whole files (see gc-tuning and src/cli/main.ts).
tuneGarbageCollector();

const ADMIN_ELSEWHERE =
  'This wharf has the client commands only; the admin commands (serve, keys, accounts, webhooks, placeholders, assets verify) run where the server runs.';

const argv = process.argv.slice(2);
const first = argv[0];
const io = processIo(isClientCommand(first) ? `wharf ${first}` : 'wharf');
if (isClientCommand(first)) {
  process.exitCode = await runClient(argv, io);
} else if (first === '--help' || first === '-h' || first === 'help') {
  io.stdout(`Usage:\n${clientUsage()}\n${ADMIN_ELSEWHERE}\n${CLIENT_EXIT_CODES}\n`);
} else {
  io.stderr(
    first === undefined
      ? `wharf: a command is required.\n${ADMIN_ELSEWHERE}\nRun "wharf --help" for usage.\n`
      : `wharf: "${first}" is not a client command.\n${ADMIN_ELSEWHERE}\nRun "wharf --help" for usage.\n`,
  );
  process.exitCode = 2;
}
