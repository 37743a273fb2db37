/**
 * The Node.js line Wharf runs on: 26, the Active LTS line since 2026-10-28. package.json's
 * `engines` says the same (test/unit/runtime.test.ts keeps the two in step).
 */
export const NODE_MAJOR = 26;

/**
 * Why this Node cannot run Wharf, or undefined. `engines` is only a warning at install time,
 * and an older Node fails later and obscurely (a native addon built for 26 refuses to load).
 */
export function runtimeProblem(version: string = process.versions.node): string | undefined {
  const major = Number(version.split('.')[0]);
  if (major >= NODE_MAJOR) return undefined;
  return (
    `Wharf runs on Node.js ${NODE_MAJOR}, and this is Node.js ${version}. Start it with "npm start" ` +
    `(npm scripts run the Node ${NODE_MAJOR} that "npm ci" installs into node_modules) or install Node.js ${NODE_MAJOR}.`
  );
}
