import { tmpdir } from 'node:os';
import { resolve } from 'node:path';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

export const SECTIONS = ['upload', 'presign', 'complete', 'download', 'rss'] as const;
export type Section = (typeof SECTIONS)[number];

/** Every knob of one benchmark run; sizes come from BENCH_SCALE, single figures from their own vars. */
export interface BenchConfig {
  scale: 'full' | 'small';
  /** Interleaved rounds per measurement (Wharf, baseline, Wharf, baseline, ...). */
  rounds: number;
  sections: Section[];
  /** Where the random source file and every server's data directory live. */
  tmpRoot: string;
  singleUploadBytes: number;
  concurrentUploads: number;
  concurrentUploadBytes: number;
  downloadBytes: number;
  /** Two direct-upload sizes whose peak RSS is compared: it must not grow with the size. */
  rssUploadBytes: [number, number];
  presignConnections: number;
  presignSeconds: number;
  presignBatch: number;
  completeFiles: number;
  completeFileBytes: number;
  completeConcurrency: number;
  /** Directory for `node --cpu-prof` profiles of the Wharf child, or undefined for none. */
  cpuProfileDir: string | undefined;
  /** Extra `node` flags for the shared Wharf and baseline children (diagnostics, e.g. --trace-gc). */
  childNodeArgs: string[];
  /** Where the shared children's full stdout/stderr go, or undefined to keep only a tail for errors. */
  childLogDir: string | undefined;
}

const SCALES = {
  full: {
    rounds: 5,
    singleUploadBytes: 1 * GiB,
    concurrentUploads: 8,
    concurrentUploadBytes: 128 * MiB,
    downloadBytes: 1 * GiB,
    rssUploadBytes: [256 * MiB, 2 * GiB] as [number, number],
    presignSeconds: 10,
    completeFiles: 2000,
  },
  small: {
    rounds: 3,
    singleUploadBytes: 64 * MiB,
    concurrentUploads: 8,
    concurrentUploadBytes: 8 * MiB,
    downloadBytes: 64 * MiB,
    rssUploadBytes: [64 * MiB, 256 * MiB] as [number, number],
    presignSeconds: 3,
    completeFiles: 300,
  },
};

export function loadBenchConfig(env: NodeJS.ProcessEnv = process.env): BenchConfig {
  const scaleName = env.BENCH_SCALE ?? 'full';
  if (scaleName !== 'full' && scaleName !== 'small') {
    throw new Error(`BENCH_SCALE must be "full" or "small", got ${JSON.stringify(scaleName)}`);
  }
  const scale = SCALES[scaleName];
  const sections = (env.BENCH_ONLY ?? SECTIONS.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const s of sections) {
    if (!(SECTIONS as readonly string[]).includes(s)) {
      throw new Error(`BENCH_ONLY: unknown section ${JSON.stringify(s)} (known: ${SECTIONS.join(', ')})`);
    }
  }
  const mib = (name: string, fallback: number) => whole(env, name, fallback / MiB, 1, 64 * 1024) * MiB;
  return {
    scale: scaleName,
    rounds: whole(env, 'BENCH_ROUNDS', scale.rounds, 1, 20),
    sections: sections as Section[],
    tmpRoot: resolve(env.BENCH_TMPDIR ?? tmpdir()),
    singleUploadBytes: mib('BENCH_UPLOAD_MIB', scale.singleUploadBytes),
    concurrentUploads: whole(env, 'BENCH_CONCURRENT_UPLOADS', scale.concurrentUploads, 1, 64),
    concurrentUploadBytes: mib('BENCH_CONCURRENT_MIB', scale.concurrentUploadBytes),
    downloadBytes: mib('BENCH_DOWNLOAD_MIB', scale.downloadBytes),
    rssUploadBytes: scale.rssUploadBytes,
    presignConnections: 50,
    presignSeconds: whole(env, 'BENCH_PRESIGN_SECONDS', scale.presignSeconds, 1, 120),
    presignBatch: 100,
    completeFiles: whole(env, 'BENCH_COMPLETE_FILES', scale.completeFiles, 10, 100_000),
    completeFileBytes: 1 * KiB,
    completeConcurrency: 20,
    cpuProfileDir: env.BENCH_CPU_PROF ? resolve(env.BENCH_CPU_PROF) : undefined,
    childNodeArgs: (env.BENCH_CHILD_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== ''),
    childLogDir: env.BENCH_LOG_DIR ? resolve(env.BENCH_LOG_DIR) : undefined,
  };
}

function whole(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be a whole number between ${min} and ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}
