/** See build-console.js. */
export function buildConsole(options?: { outdir?: string; minify?: boolean }): Promise<{
  entry: { js: string; css: string };
  files: string[];
}>;
