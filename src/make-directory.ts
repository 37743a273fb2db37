import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * `path` made with the parents it lacks, each with `mode`. One level at a time: mkdir's
 * `recursive` reports a parent it cannot write into (a read-only file system's EROFS, a
 * directory it may not write to) as ENOENT of the path, which then reads as a typo. A path that
 * exists is left as it is (a file there included: the first write into it says ENOTDIR).
 */
export async function makeDirectory(path: string, mode: number): Promise<void> {
  try {
    await mkdir(path, { mode });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT' || dirname(path) === path) throw err;
    await makeDirectory(dirname(path), mode);
    await mkdir(path, { mode }).catch((again: NodeJS.ErrnoException) => {
      if (again.code !== 'EEXIST') throw again;
    });
  }
}
