/**
 * Gathers the writes to a client made in one turn of the event loop into one system call: the
 * stream is corked at the first write and uncorked once the turn's I/O callbacks have run
 * (setImmediate). A batch of replicated ops publishes one event per op; without this each event
 * to each client was its own write, the largest single cost of a busy replica (CPU profile at
 * 1,000 writes/s). Nothing is delayed: the writes leave within the same turn.
 *
 * The returned function is called before each write; it answers true for the first write of a
 * turn. Only then does what is still queued measure how far behind the client is: later in the
 * turn the queue also holds the turn's own corked writes.
 */
export function corkPerTurn(stream: { cork(): void; uncork(): void }): () => boolean {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    stream.uncork();
  };
  return () => {
    if (corked) return false;
    corked = true;
    stream.cork();
    setImmediate(uncork);
    return true;
  };
}
