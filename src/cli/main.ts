#!/usr/bin/env node
// The CLI's entry: `npm run wharf -- …` from source, bin/wharf.js once built. The client
// commands (upload, sync, ls, get, rm, login) load only the SDK, never the server, so they start fast;
// the admin commands import the server's code.
import { tuneGarbageCollector } from '../gc-tuning.js';
import { keepFilesPrivate } from '../umask.js';
import { processIo } from './io.js';
import { isClientCommand, runClient } from './upload/main.js';

// The uploader reads and hashes whole files: the same Buffers as the server's (see gc-tuning).
tuneGarbageCollector();

const argv = process.argv.slice(2);
const io = processIo(isClientCommand(argv[0]) ? `wharf ${argv[0]}` : 'wharf');
if (isClientCommand(argv[0])) {
  // `npm run wharf -- upload photos/` runs in the package's folder: paths are the caller's.
  if (io.cwd) process.chdir(io.cwd);
  process.exitCode = await runClient(argv, io);
} else {
  // The admin commands work on the server's data directory (a backup copies it): what they
  // create is as private as what the server does (see umask.ts). Not the client commands,
  // whose downloads are the caller's own files, made with the caller's umask. They stay in the
  // package's folder, as the server does: a relative WHARF_DATA_DIR (the default ./data) is the
  // one `npm start` uses there; a path the caller gives them is resolved against io.cwd.
  keepFilesPrivate();
  const { run } = await import('./commands.js');
  const result = await run(argv, io);
  // Setting exitCode (not calling exit) lets pending output flush first.
  if ('exitCode' in result) process.exitCode = result.exitCode;
}
