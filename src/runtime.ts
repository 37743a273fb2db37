/**
 * The Node.js line Wharf runs on: 26, the Active LTS line since 2026-10-28. package.json's
 * `engines` says the same (test/unit/runtime.test.ts keeps the two in step).
 */
export const NODE_MAJOR = 26;

/**
 * Why this Node cannot run Wharf, or undefined. `engines` is only a warning at install time,
 * and an older Node fails later and obscurely (a native addon built for 26 refuses to load).
 * What to do differs: the server is started with `npm start`, an admin command is run through
 * `npm run wharf` (or npx), each finding the Node that `npm ci` installed.
 */
export function runtimeProblem(
  version: string = process.versions.node,
  what: 'server' | 'command' = 'server',
): string | undefined {
  const major = Number(version.split('.')[0]);
  if (major >= NODE_MAJOR) return undefined;
  const installed = `the Node ${NODE_MAJOR} that "npm ci" installs into node_modules`;
  return what === 'server'
    ? `Wharf runs on Node.js ${NODE_MAJOR}, and this is Node.js ${version}. Start it with "npm start" ` +
        `(npm scripts run ${installed}) or install Node.js ${NODE_MAJOR}.`
    : `Wharf runs on Node.js ${NODE_MAJOR}, and this is Node.js ${version}. In the Wharf directory, run the ` +
        `command as "npm run -s wharf -- <command>" or "npx node bin/wharf.js <command>" (both run ${installed}), ` +
        `or install Node.js ${NODE_MAJOR}.`;
}
