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
  if (deeperThan(value, maxDepth)) return `nested deeper than ${maxDepth} levels (maxJsonDepth)`;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item === 'number' && !Number.isFinite(item))
      return 'holds a number JSON cannot carry (too large)';
    // (A loop, not push(...children): an array of a million numbers is more arguments than a
    // call may take.)
    if (typeof item === 'object' && item !== null)
      for (const child of Array.isArray(item) ? item : Object.values(item)) stack.push(child);
  }
  return undefined;
}
