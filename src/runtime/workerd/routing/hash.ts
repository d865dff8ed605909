/**
 * Rendezvous (highest random weight) hashing: a key goes to the member whose hash with it
 * is highest. When the pool grows from N to N+1 members, only the keys the new member wins
 * move (about 1/(N+1) of them), and every other key stays where its state is; shrinking
 * moves only the removed member's keys. Hand-written rather than a library: it is a dozen
 * lines, and it must run in workerd without Node built-ins (no `node:crypto`).
 */

/** FNV-1a over the UTF-16 code units, then murmur3's finaliser so that near keys spread. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The member (0 … size-1) that `key` belongs to among `size`. */
export function rendezvous(key: string, size: number): number {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`pool size must be a whole number of at least 1 (got ${size})`);
  let best = 0;
  let bestWeight = -1;
  for (let member = 0; member < size; member++) {
    const weight = hash32(`${member}\u0000${key}`);
    if (weight > bestWeight) {
      best = member;
      bestWeight = weight;
    }
  }
  return best;
}
