/**
 * Routes to peers that are not directly linked, from the link state every peer floods (the
 * `links` of its PeerRecord). An edge u–v counts only when both u and v list each other, so the
 * stale record of a peer that died, still listing its old neighbours, adds no path once those
 * neighbours have flooded records without it. Breadth-first from this peer: each reachable peer's
 * route is the first hop of a shortest path, ties broken by the lower id for stable answers.
 */

export interface LinkState {
  id: string;
  links: readonly string[];
  left?: boolean | undefined;
}

/** Maps every reachable peer (not self) to its first hop; a direct neighbour maps to itself. */
export function computeRoutes(
  selfId: string,
  directIds: Iterable<string>,
  records: ReadonlyMap<string, LinkState>,
): Map<string, string> {
  const adjacency = (id: string): string[] => {
    if (id === selfId) return [...directIds];
    const record = records.get(id);
    if (!record || record.left) return [];
    return record.links.filter((other) => {
      if (other === selfId) return false;
      const back = records.get(other);
      return back !== undefined && !back.left && back.links.includes(id);
    });
  };
  const firstHop = new Map<string, string>();
  let frontier = [...new Set(directIds)].sort();
  for (const id of frontier) firstHop.set(id, id);
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const id of frontier) {
      for (const neighbour of adjacency(id).sort()) {
        if (neighbour === selfId || firstHop.has(neighbour)) continue;
        firstHop.set(neighbour, firstHop.get(id)!);
        next.push(neighbour);
      }
    }
    frontier = next;
  }
  return firstHop;
}
