import type { ChildServer } from './children.js';
import type { BenchConfig } from './config.js';
import type { WharfServer } from './servers.js';

/** What every scenario gets: the configuration, the shared servers and the source data. */
export interface BenchContext {
  config: BenchConfig;
  /** This run's temporary directory; removed at exit. */
  workDir: string;
  /** Pre-generated random bytes that upload bodies are streamed from. */
  dataFile: string;
  dataFileBytes: number;
  wharf: WharfServer;
  baseline: ChildServer;
  log(message: string): void;
}
