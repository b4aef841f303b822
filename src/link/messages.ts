/**
 * Messages inside sealed link frames: one JSON object per frame, its type in `t`.
 * ONLY APPEND TO THE LIST OF TYPES. A receiver ignores fields it does not know and counts (and
 * drops) messages of a type it does not know, so a newer peer can talk to an older one.
 */

import Type, { type Static } from 'typebox';
import Compile from 'typebox/compile';
import { deeperThan } from '../json-depth.ts';
import { NODE_TYPES } from '../store/node-types.ts';

const Id = Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' });

/**
 * What a peer says about itself, flooded through the mesh (membership gossip): its metadata, the
 * addresses it can be dialled at, and the peers it is directly linked to (for routes). Only the
 * peer itself issues its record; a newer one has a higher (generation, seq).
 */
export const PeerRecord = Type.Object({
  id: Id,
  generation: Type.Integer({ minimum: 0, maximum: 0xffffffff }),
  seq: Type.Integer({ minimum: 0 }),
  name: Type.String({ maxLength: 256 }),
  addresses: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 32 }),
  port: Type.Integer({ minimum: 1, maximum: 65535 }),
  model: Type.String({ maxLength: 256 }),
  version: Type.String({ maxLength: 64 }),
  os: Type.String({ maxLength: 256 }),
  platform: Type.String({ maxLength: 32 }),
  settings: Type.Record(Type.String(), Type.Unknown()),
  links: Type.Array(Id, { maxItems: 4096 }),
  /** Heartbeat round-trip time of each direct link, ms (refreshed every few seconds). */
  rtts: Type.Optional(Type.Record(Type.String(), Type.Number())),
  left: Type.Optional(Type.Boolean()),
});
export type PeerRecord = Static<typeof PeerRecord>;

/** A heartbeat; `rtt` is the RTT the pinging end last measured, for the other end to show. */
const Ping = Type.Object({ t: Type.Literal('ping'), ts: Type.Number(), rtt: Type.Optional(Type.Number()) });
const Pong = Type.Object({ t: Type.Literal('pong'), ts: Type.Number() });
const Records = Type.Object({
  t: Type.Literal('records'),
  records: Type.Array(PeerRecord, { maxItems: 4096 }),
});
const Bye = Type.Object({ t: Type.Literal('bye'), record: PeerRecord });

// Replication (see src/replication/replicator.ts for the protocol).
const Hlc = Type.String({ pattern: '^\\d{15}-\\d{6}$' });
const NodeTypeName = Type.Enum(NODE_TYPES);
const NodeState = Type.Object({
  id: Id,
  type: NodeTypeName,
  parent: Type.Union([Id, Type.Null()]),
  name: Type.String({ maxLength: 256 }),
  meta: Type.Record(Type.String(), Type.Unknown()),
  value: Type.Optional(Type.Unknown()),
});
const OpKind = Type.Union([
  Type.Literal('create'),
  Type.Literal('update'),
  Type.Literal('value'),
  Type.Literal('delete'),
]);
const OpSchema = Type.Object({
  owner: Id,
  seq: Type.Integer({ minimum: 1 }),
  hlc: Hlc,
  kind: OpKind,
  node: NodeState,
});
/** A node in a snapshot: its state, and the stamp and version of the op that left it so. */
const SnapshotNode = Type.Object({
  ...NodeState.properties,
  hlc: Hlc,
  version: Type.Integer({ minimum: 1 }),
});
const WriteRequest = Type.Union([
  Type.Object({ kind: Type.Literal('create'), node: NodeState }),
  Type.Object({
    kind: Type.Literal('update'),
    id: Id,
    name: Type.Optional(Type.String({ maxLength: 256 })),
    meta: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  }),
  Type.Object({ kind: Type.Literal('value'), id: Id, value: Type.Unknown() }),
  Type.Object({ kind: Type.Literal('delete'), id: Id }),
]);
export type WriteRequest = Static<typeof WriteRequest>;
const Routed = {
  rid: Type.String({ maxLength: 64 }),
  from: Id,
  to: Id,
  ttl: Type.Integer({ minimum: 0, maximum: 64 }),
};

/**
 * A version vector: for each owner, the highest of its ops applied in sequence. `mine`: the
 * stamp of the sender's own op at its entry; `yours`: the stamp of one op of the receiver's the
 * sender holds, when the log still has them (so that an owner can tell its numbering from another
 * copy's: replicator.ts `#checkOwnHistory`).
 */
const Vv = Type.Object({
  t: Type.Literal('vv'),
  vv: Type.Record(Type.String(), Type.Integer({ minimum: 0 })),
  mine: Type.Optional(Hlc),
  yours: Type.Optional(Type.Object({ seq: Type.Integer({ minimum: 1 }), hlc: Hlc })),
});
const Ops = Type.Object({ t: Type.Literal('ops'), ops: Type.Array(OpSchema, { maxItems: 100_000 }) });
/** One chunk of a snapshot of an owner's live nodes at `seq`; the last chunk has `last`. */
const Snap = Type.Object({
  t: Type.Literal('snap'),
  owner: Id,
  seq: Type.Integer({ minimum: 0 }),
  nodes: Type.Array(SnapshotNode, { maxItems: 100_000 }),
  /** Its deleted nodes not yet collected (a peer that does not know this field skips it). */
  deleted: Type.Optional(Type.Array(SnapshotNode, { maxItems: 100_000 })),
  /** The stamp of the owner's op `seq`, when the sender knows it. */
  hlc: Type.Optional(Hlc),
  last: Type.Boolean(),
});
/** A write forwarded, hop by hop, to the owner of its node. */
const Write = Type.Object({ t: Type.Literal('write'), ...Routed, req: WriteRequest });
/** The owner's answer to a forwarded write, routed back to where it came from. */
const WriteResult = Type.Object({
  t: Type.Literal('wres'),
  ...Routed,
  ok: Type.Boolean(),
  seq: Type.Optional(Type.Integer({ minimum: 0 })),
  node: Type.Optional(Type.Unknown()),
  error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
});

/**
 * Automation run state, flooded to every peer (not stored): `fire` says a trigger fired, so the
 * executors it wakes run wherever they are placed. Deduplicated by (origin, seq).
 */
const Auto = Type.Object({
  t: Type.Literal('auto'),
  origin: Id,
  seq: Type.Integer({ minimum: 0 }),
  id: Id,
  fire: Type.Boolean(),
  state: Type.Record(Type.String(), Type.Unknown()),
});
export type AutoMessage = Static<typeof Auto>;

/** A server retired from the mesh: store.ts RetiredServer (see src/replication/retirement.ts). */
const RetiredServer = Type.Object({
  id: Id,
  name: Type.String({ maxLength: 256 }),
  by: Id,
  at: Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$' }),
});
/** Retired servers: all of them at the start of a link, then each new one, flooded. */
const Retired = Type.Object({
  t: Type.Literal('retired'),
  records: Type.Array(RetiredServer, { maxItems: 4096 }),
});

/**
 * Asks for the readings of an owner's data point from `from` to `to` (ms, both included), less the
 * first `skip` of those at `from` (sent in an earlier page), and at `to` only those of the owner's
 * ops up to `seq`: those a snapshot at `seq` could not carry (replicator.ts "Readings a snapshot
 * could not carry"). `ref` comes back with the answer.
 */
const ReadingsAsk = Type.Object({
  t: Type.Literal('rdq'),
  ref: Type.Integer({ minimum: 0 }),
  owner: Id,
  node: Id,
  from: Type.Integer({ minimum: 0 }),
  skip: Type.Integer({ minimum: 0 }),
  to: Type.Integer({ minimum: 0 }),
  seq: Type.Integer({ minimum: 0 }),
});
/**
 * A page of them, oldest first, as [t, seq (null when not known), value]; `more` when the range
 * holds more after the last; `later` (and no points) when the sender lacks some of them (it
 * fetches them itself, or has not applied the ops up to `seq`).
 */
const Readings = Type.Object({
  t: Type.Literal('rd'),
  ref: Type.Integer({ minimum: 0 }),
  points: Type.Array(
    Type.Tuple([
      Type.Integer({ minimum: 0 }),
      Type.Union([Type.Integer({ minimum: 0 }), Type.Null()]),
      Type.Unknown(),
    ]),
    { maxItems: 100_000 },
  ),
  more: Type.Boolean(),
  later: Type.Optional(Type.Boolean()),
});

export type LinkMessage =
  | Static<typeof Ping>
  | Static<typeof Pong>
  | Static<typeof Records>
  | Static<typeof Bye>
  | Static<typeof Vv>
  | Static<typeof Ops>
  | Static<typeof Snap>
  | Static<typeof Write>
  | Static<typeof WriteResult>
  | AutoMessage
  | Static<typeof Retired>
  | Static<typeof ReadingsAsk>
  | Static<typeof Readings>;

const CHECKS = new Map<string, { Check(value: unknown): boolean }>([
  ['ping', Compile(Ping)],
  ['pong', Compile(Pong)],
  ['records', Compile(Records)],
  ['bye', Compile(Bye)],
  ['vv', Compile(Vv)],
  ['ops', Compile(Ops)],
  ['snap', Compile(Snap)],
  ['write', Compile(Write)],
  ['wres', Compile(WriteResult)],
  ['auto', Compile(Auto)],
  ['retired', Compile(Retired)],
  ['rdq', Compile(ReadingsAsk)],
  ['rd', Compile(Readings)],
]);

export type MessageRejection = 'malformed' | 'unknown_type' | 'invalid';

/**
 * How deep a message may nest: above any value a server takes (Config.maxJsonDepth is 200 at
 * most, inside a few levels of message), below what JSON.stringify can write back out.
 */
export const MAX_MESSAGE_DEPTH = 256;

/** Parses and validates one decrypted frame. Never throws. */
export function parseMessage(
  plaintext: Buffer,
): { ok: true; message: LinkMessage } | { ok: false; reason: MessageRejection } {
  let value: unknown;
  try {
    value = JSON.parse(plaintext.toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed' };
  }
  if (typeof value !== 'object' || value === null || typeof (value as { t?: unknown }).t !== 'string') {
    return { ok: false, reason: 'malformed' };
  }
  const check = CHECKS.get((value as { t: string }).t);
  if (!check) return { ok: false, reason: 'unknown_type' };
  if (!check.Check(value) || deeperThan(value, MAX_MESSAGE_DEPTH)) return { ok: false, reason: 'invalid' };
  return { ok: true, message: value as LinkMessage };
}

export function encodeMessage(message: LinkMessage): Buffer {
  return Buffer.from(JSON.stringify(message), 'utf8');
}
