#!/usr/bin/env node
// The installed `wharf` command: runs the compiled CLI (build it first with `npm run build`).
try {
  await import('../dist/src/cli/main.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/src/cli/main.js')) {
    process.stderr.write(
      'wharf: the CLI is not built yet; run "npm run build" in the Wharf directory first.\n',
    );
    process.exit(1);
  }
  throw err;
}
