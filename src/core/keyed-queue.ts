/**
 * Runs the tasks given for one key one after another; tasks of different keys run at once.
 * In-process only: what it orders is this process's own work on a key (a node's promotions
 * of one tus upload, the steps that end one multipart upload), not other nodes'.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key);
    const next = previous ? previous.then(task, task) : task();
    this.tails.set(key, next);
    const forget = () => {
      if (this.tails.get(key) === next) this.tails.delete(key);
    };
    next.then(forget, forget);
    return next;
  }

  /** Waits for the key's earlier tasks, then holds the key until the returned function is called. */
  lock(key: string): Promise<() => void> {
    return new Promise((acquired) => {
      void this.run(key, () => new Promise<void>((release) => acquired(release)));
    });
  }
}
