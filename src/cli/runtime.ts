/**
 * Node options a peer runs with (also in the `#!` line of the `shoal` command and in
 * `npm run demo`; a unit test keeps the three the same):
 *
 * - `--max-semi-space-size=1`: a 1 MB young-generation semi-space instead of the default 16 MB.
 *   An idle peer allocates little, so the young generation never needs more, and each peer keeps
 *   about 18 MB less resident (measured: 112 MB to 94 MB RSS); its scavenges cost no measurable CPU.
 * - `--no-memory-reducer`: V8's memory reducer ran a full mark-compact of the whole heap about
 *   every 10 s in an idle peer, for ever (3 major GCs in every 30 s window), which was 40 % of
 *   an idle peer's CPU (measured in a settled mesh of 10: 1.0 % of a core with it, 0.52 % without)
 *   for about 5 MB less RSS. Major GCs still run when the heap grows, as in any busy process.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--no-memory-reducer'];
