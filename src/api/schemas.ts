/** Schemas of the API's bodies and answers: validation, fast serialisation and (later) OpenAPI. */

import Type from 'typebox';

export const ErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
});

export const Health = Type.Object({
  status: Type.Literal('ok'),
  id: Type.String(),
  name: Type.String(),
  version: Type.String(),
  uptimeS: Type.Number(),
});

export const Server = Type.Object({
  id: Type.String(),
  name: Type.String(),
  port: Type.Integer(),
  model: Type.String(),
  version: Type.String(),
  os: Type.String(),
  platform: Type.String(),
  settings: Type.Record(Type.String(), Type.Unknown()),
});

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const Peer = Type.Object({
  id: Type.String(),
  name: Type.String(),
  address: Nullable(Type.String()),
  port: Nullable(Type.Integer()),
  model: Type.String(),
  version: Type.String(),
  os: Type.String(),
  platform: Type.String(),
  settings: Type.Record(Type.String(), Type.Unknown()),
  state: Type.Union([Type.Literal('connected'), Type.Literal('connecting'), Type.Literal('disconnected')]),
  rttMs: Nullable(Type.Number()),
  lastSeen: Nullable(Type.String()),
  since: Type.String(),
  route: Nullable(Type.String()),
});

export const Peers = Type.Object({ peers: Type.Array(Peer) });

/** A server retired from the mesh: who, its last name, the server that retired it, and when. */
export const RetiredServer = Type.Object({
  id: Type.String(),
  name: Type.String(),
  by: Type.String(),
  at: Type.String(),
});

export const RetiredServers = Type.Object({ retired: Type.Array(RetiredServer) });

export const Retirement = Type.Object({
  retired: RetiredServer,
  /** Live nodes of the server deleted on the server that answers (each server deletes its own copy). */
  removedNodes: Type.Integer(),
});

export const MeshGraph = Type.Object({
  servers: Type.Array(
    Type.Object({
      id: Type.String(),
      name: Type.String(),
      state: Type.Union([
        Type.Literal('self'),
        Type.Literal('connected'),
        Type.Literal('connecting'),
        Type.Literal('disconnected'),
      ]),
    }),
  ),
  links: Type.Array(Type.Object({ a: Type.String(), b: Type.String(), rttMs: Nullable(Type.Number()) })),
});

export const Node = Type.Object({
  id: Type.String(),
  type: Type.String(),
  parent: Nullable(Type.String()),
  owner: Type.String(),
  name: Type.String(),
  meta: Type.Record(Type.String(), Type.Unknown()),
  value: Type.Optional(Type.Unknown()),
  updatedAt: Type.String(),
  version: Type.Integer(),
  /** Automation nodes: what the job last did (runner, runs, lastRun, ok, result, error). */
  state: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});

export const Nodes = Type.Object({ nodes: Type.Array(Node) });

/** Any id of a node or a server: one that names none is a 404, not a 400. */
export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });
