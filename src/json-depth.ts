/**
 * How deep a JSON value nests, checked without recursion. JSON.stringify recurses, so a value
 * nested a few thousand levels deep throws RangeError wherever it is written: in the store, in
 * an event, in a message. Values and meta are held to `maxJsonDepth` where they enter (see
 * config.ts); link messages to a fixed bound above any value that entered that way.
 */

/** True when `value` nests arrays or objects more than `limit` levels deep (a scalar is 0). */
export function deeperThan(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (typeof item !== 'object' || item === null) continue;
    if (depth + 1 > limit) return true;
    for (const child of Array.isArray(item) ? item : Object.values(item)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}

/**
 * What keeps `value` from being written as JSON and read back the same, or undefined: nesting
 * deeper than `maxDepth`, or a number JSON cannot carry (1e400 parses to Infinity, which is
 * written as null).
 */
export function jsonProblem(value: unknown, maxDepth: number): string | undefined {
  // One walk for both (every write's value goes through it); too deep is told first.
  let tooLarge = false;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (typeof item === 'number') tooLarge ||= !Number.isFinite(item);
    if (typeof item !== 'object' || item === null) continue;
    if (depth + 1 > maxDepth) return `nested deeper than ${maxDepth} levels (maxJsonDepth)`;
    // (A loop, not push(...children): an array of a million numbers is more arguments than a
    // call may take.)
    for (const child of Array.isArray(item) ? item : Object.values(item)) stack.push([child, depth + 1]);
  }
  return tooLarge ? 'holds a number JSON cannot carry (too large)' : undefined;
}
