/**
 * Teardown that runs however the benchmark ends: normal completion, a thrown error,
 * Ctrl-C or SIGTERM. Tasks run last-registered first (children stop before their data
 * directories are removed). Each task may also have a synchronous fallback for the
 * 'exit' event, where nothing asynchronous can run any more.
 */
interface Task {
  name: string;
  run: () => Promise<void>;
  sync: (() => void) | undefined;
}

const tasks: Task[] = [];
let running: Promise<void> | undefined;

/** Registers a teardown step; the returned function unregisters it (after doing it yourself). */
export function onCleanup(name: string, run: () => Promise<void>, sync?: () => void): () => void {
  const task: Task = { name, run, sync };
  tasks.push(task);
  return () => {
    const at = tasks.indexOf(task);
    if (at !== -1) tasks.splice(at, 1);
  };
}

/** Runs every registered task once, newest first; a failing task does not stop the others. */
export function cleanupAll(): Promise<void> {
  running ??= (async () => {
    while (tasks.length > 0) {
      const task = tasks.pop()!;
      try {
        await task.run();
      } catch (err) {
        process.stderr.write(`cleanup (${task.name}) failed: ${String(err)}\n`);
      }
    }
  })();
  return running;
}

/** A signal tears everything down, then exits with the conventional 128+n status. */
export function installExitHandlers(): void {
  const codes: Record<string, number> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };
  for (const [signal, number] of Object.entries(codes)) {
    process.on(signal, () => {
      // Ctrl-C reaches every process of the group (npm, tsx, us) at once: only act once.
      if (running) return;
      process.stderr.write(`\n${signal}: stopping servers and removing temporary files...\n`);
      // Bounded: a wedged child must not keep the terminal hostage.
      const force = setTimeout(() => process.exit(128 + number), 20_000);
      force.unref();
      void cleanupAll().finally(() => process.exit(128 + number));
    });
  }
  // Last resort when the process exits without having cleaned up (e.g. process.exit elsewhere).
  process.on('exit', () => {
    for (const task of tasks.splice(0).reverse()) {
      try {
        task.sync?.();
      } catch {
        // Nothing more can be done while exiting.
      }
    }
  });
}
