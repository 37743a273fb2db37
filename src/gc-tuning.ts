import { setFlagsFromString } from 'node:v8';

/**
 * The V8 flag that counts the memory Buffers hold toward the heap's limit, rather than every
 * byte ever allocated in them since the last full collection.
 *
 * Why: every socket read and every file read makes a Buffer. Under V8's older rule, each
 * 64 MiB of them (garbage a moment later) starts a full mark-compact of the whole heap; a
 * 1 GiB upload set off 10–27 of them, marking Wharf's ~45 MB heap each time, about 1–2.5 s of
 * GC threads' CPU per GiB on top of the hashing. With the flag, the same upload runs none (see
 * bench/README.md, "GC and Buffers"). V8 14.8 made this its only behaviour and removed the
 * flag (V8 commits 513bb22991 and cf511a65ad, chromium bug 361124432); Node 26 ships V8 14.6.
 */
export const BUFFER_ACCOUNTING_FLAG = '--external-memory-accounted-in-global-limit';

/** The V8 that does this by default (and no longer knows the flag). */
const DEFAULT_FROM: readonly [number, number] = [14, 8];

/**
 * Below this V8 the flag is left unset. Node 24's 13.6 knows it; Node 20's 11.3 does not, and
 * prints "unrecognized flag" on stderr when it is set. Which release between them added it is not
 * checked here, so a Node 22 (V8 12.4) only goes without the tuning. Only the server needs Node
 * 26; the SDK package's `wharf` command runs on Node 22 and later.
 */
const KNOWN_FROM: readonly [number, number] = [13, 0];

function atLeast(version: readonly number[], [major, minor]: readonly [number, number]): boolean {
  const [m = 0, n = 0] = version;
  return m > major || (m === major && n >= minor);
}

/** The flag to set on this V8, or undefined where it is already how V8 works (or unknown). */
export function gcFlagsFor(v8Version: string): string | undefined {
  const version = v8Version.split('.').map(Number);
  if (atLeast(version, DEFAULT_FROM) || !atLeast(version, KNOWN_FROM)) return undefined;
  return BUFFER_ACCOUNTING_FLAG;
}

/**
 * Sets the flag where this V8 needs it. Called first thing in a process (the server, the CLI),
 * before the heap has grown: the flag only changes how the next collections are scheduled.
 * Not on the command line, which a V8 that removed the flag would refuse.
 */
export function tuneGarbageCollector(v8Version: string = process.versions.v8): boolean {
  const flag = gcFlagsFor(v8Version);
  if (!flag) return false;
  setFlagsFromString(flag);
  return true;
}
