import type { Core } from '../../core/wharf.js';

/** What every compat adapter gets: the core's services and where Wharf is reachable. */
export interface CompatContext {
  core: Core;
  publicUrl: string;
}
