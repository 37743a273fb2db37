#!/usr/bin/env node
import { run } from './commands.js';

// The CLI's entry: `npm run wharf -- …` from source, bin/wharf.js once built.
const result = await run(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
});
// Setting exitCode (not calling exit) lets pending output flush first.
if ('exitCode' in result) process.exitCode = result.exitCode;
