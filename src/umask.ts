/**
 * What the server and the admin commands create is closed to other users of the machine: the
 * umask keeps 0o027 off every mode (no write for the group, nothing for others), on top of
 * whatever the caller's umask already takes away.
 *
 * Why the umask, besides the explicit modes Wharf's own code gives what it creates (the data
 * directory 0750, the database 0600, stored objects 0640): files that other code creates with
 * its default mode 0666 or 0777 follow it too: tus.io's FileStore makes an upload's bytes, its
 * `.json` facts and their directories with no mode of its own, and so would code added later.
 * Under a umask of 022 (the usual one, CI's too) those were readable by every user. Set only at
 * the entry points (main.ts, cli/main.ts): a umask is the whole process's, so library code (and
 * the tests that run the server in-process) leaves it alone. The explicit modes stay, for what
 * matters most: they hold in-process too, and whatever umask the process was started with.
 */
export const PRIVATE_UMASK = 0o027;

/** Adds PRIVATE_UMASK to the process's umask (never loosens a stricter one, such as 077). */
export function keepFilesPrivate(): void {
  // process.umask() with no argument is deprecated (it sets 0 for a moment to read it): set,
  // and read the previous one from the answer.
  const previous = process.umask(PRIVATE_UMASK);
  if ((previous | PRIVATE_UMASK) !== PRIVATE_UMASK) process.umask(previous | PRIVATE_UMASK);
}
