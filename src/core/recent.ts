/**
 * A bounded map that forgets the entry used least recently once it is full. Hand-written
 * because it is a dozen lines on Map's insertion order (a hit re-inserts its entry at the
 * end); lru-cache would do the same, at the cost of a dependency for the core.
 */
export class RecentMap<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly capacity: number) {}

  get(key: K): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) {
      // The first key in insertion order is the one used least recently.
      this.entries.delete(this.entries.keys().next().value as K);
    }
  }

  /** Forgets every entry whose key `test` accepts. */
  deleteWhere(test: (key: K) => boolean): void {
    for (const key of this.entries.keys()) if (test(key)) this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}
