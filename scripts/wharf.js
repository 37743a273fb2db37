// `npm run wharf -- …`: the CLI from source in a checkout, the compiled one (bin/wharf.js) in
// a production install, which ships neither src/ nor tsx (docs/deployment.md). So the same
// command runs in both, on the Node 26 that npm scripts find in node_modules. Plain JavaScript,
// like scripts/start.js; it loads the CLI in this same process.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
if (existsSync(source)) {
  // tsx is a dev dependency, there wherever the sources are (`node --import tsx`, in-process).
  await import('tsx');
  await import(source.href);
} else {
  await import('../bin/wharf.js');
}
