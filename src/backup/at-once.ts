/**
 * `work` on each item, `limit` at a time. Once one fails, no other starts, and those under way
 * are waited for before the first failure is thrown: the caller then cleans up what they write
 * into (Promise.all threw at once, and the cleanup that followed met files they were still
 * making: ENOTEMPTY instead of the disk being full).
 */
export async function eachAtOnce<T>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (failure === undefined && next < items.length) {
      await work(items[next++]!).catch((err: unknown) => {
        failure ??= { err };
      });
    }
  });
  await Promise.all(workers);
  if (failure) throw failure.err;
}
