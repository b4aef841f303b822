/**
 * Node options a peer runs with (also in the `#!` line of the `shoal` command): a 1 MB
 * young-generation semi-space instead of the default 16 MB. An idle peer allocates little, so the
 * young generation never needs more, and each peer keeps about 18 MB less resident (measured:
 * 112 MB to 94 MB RSS); the scavenges it adds cost no measurable CPU at idle.
 */
export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
