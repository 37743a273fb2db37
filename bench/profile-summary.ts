/**
 * Prints the hottest functions and packages of a CPU profile written by the Wharf child
 * when the benchmark runs with BENCH_CPU_PROF=<dir>:
 *
 *   npx tsx bench/profile-summary.ts <file.cpuprofile> [top]
 */
import { renderHotspots, summarizeProfile } from './lib/profile.js';

const [path, top] = process.argv.slice(2);
if (!path) {
  process.stderr.write('usage: tsx bench/profile-summary.ts <file.cpuprofile> [top]\n');
  process.exit(2);
}
const summary = await summarizeProfile(path, top ? Number(top) : 25);
process.stdout.write(
  `${path}: ${(summary.busyMs / 1000).toFixed(1)} s of non-idle CPU on the main thread\n\n`,
);
process.stdout.write(`${renderHotspots('Self time by origin:', summary.origins)}\n\n`);
process.stdout.write(`${renderHotspots('Self time by function:', summary.functions)}\n`);
