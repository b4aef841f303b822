/** The node routes of /api/v1: the tree, one node, create, change, set a value, delete, series. */

import type { FastifyPluginAsync } from 'fastify';
import Type from 'typebox';
import { parseTime } from '../clock.ts';
import { ShoalError } from '../errors.ts';
import type { NodeService } from '../replication/node-service.ts';
import { NODE_TYPES } from '../store/node-types.ts';
import { IdParams, Node, Nodes } from './schemas.ts';

const CreateBody = Type.Object(
  {
    type: Type.Enum(NODE_TYPES),
    parent: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    owner: Type.Optional(Type.String()),
    name: Type.String({ minLength: 1, maxLength: 256 }),
    meta: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    value: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
);
const PatchBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    meta: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false, minProperties: 1 },
);
const ValueBody = Type.Object(
  { value: Type.Unknown() },
  { additionalProperties: false, required: ['value'] },
);
const ListQuery = Type.Object(
  {
    type: Type.Optional(Type.String()),
    owner: Type.Optional(Type.String()),
    parent: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
const SeriesQuery = Type.Object(
  {
    from: Type.Optional(Type.String()),
    to: Type.Optional(Type.String()),
    // A query string is text: a whole number from 1 to 100000, checked here, read in the handler.
    limit: Type.Optional(
      Type.String({ pattern: '^(100000|[1-9][0-9]{0,4})$', description: 'a whole number from 1 to 100000' }),
    ),
  },
  { additionalProperties: false },
);
const Series = Type.Object({
  id: Type.String(),
  points: Type.Array(Type.Object({ t: Type.String(), value: Type.Unknown() })),
  /** Points of the range were left out (limit or maxSeriesBytes): ask again from after the last. */
  more: Type.Boolean(),
});

export const nodeRoutes: FastifyPluginAsync<{ nodes: NodeService }> = async (app, { nodes }) => {
  app.get<{ Querystring: { type?: string; owner?: string; parent?: string } }>(
    '/nodes',
    { schema: { querystring: ListQuery, response: { 200: Nodes } } },
    async (request) => ({ nodes: nodes.list(request.query) }),
  );

  app.get<{ Params: { id: string } }>(
    '/nodes/:id',
    { schema: { params: IdParams, response: { 200: Node } } },
    async (request) => nodes.get(request.params.id),
  );

  app.post<{
    Body: {
      type: string;
      parent?: string | null;
      owner?: string;
      name: string;
      meta?: Record<string, unknown>;
      value?: unknown;
    };
  }>('/nodes', { schema: { body: CreateBody, response: { 201: Node } } }, async (request, reply) =>
    reply.status(201).send(await nodes.create(request.body)),
  );

  app.patch<{ Params: { id: string }; Body: { name?: string; meta?: Record<string, unknown> } }>(
    '/nodes/:id',
    { schema: { params: IdParams, body: PatchBody, response: { 200: Node } } },
    async (request) => nodes.update(request.params.id, request.body),
  );

  app.put<{ Params: { id: string }; Body: { value: unknown } }>(
    '/nodes/:id/value',
    { schema: { params: IdParams, body: ValueBody, response: { 200: Node } } },
    async (request) => nodes.setValue(request.params.id, request.body.value),
  );

  app.delete<{ Params: { id: string } }>(
    '/nodes/:id',
    {
      schema: {
        params: IdParams,
        response: { 200: Type.Object({ id: Type.String(), deleted: Type.Literal(true) }) },
      },
    },
    async (request) => {
      await nodes.delete(request.params.id);
      return { id: request.params.id, deleted: true as const };
    },
  );

  app.get<{ Params: { id: string }; Querystring: { from?: string; to?: string; limit?: string } }>(
    '/nodes/:id/series',
    { schema: { params: IdParams, querystring: SeriesQuery, response: { 200: Series } } },
    async (request) => {
      const { from, to, limit } = request.query;
      const { points, more } = nodes.series(
        request.params.id,
        from === undefined ? 0 : time(from, 'from'),
        to === undefined ? Number.MAX_SAFE_INTEGER : time(to, 'to'),
        limit === undefined ? 10_000 : Number(limit),
      );
      return {
        id: request.params.id,
        points: points.map((p) => ({ t: new Date(p.t).toISOString(), value: p.value })),
        more,
      };
    },
  );
};

/** A time given as milliseconds since the epoch or as an ISO 8601 date. */
function time(value: string, field: string): number {
  const ms = parseTime(value);
  if (ms === undefined)
    throw new ShoalError('SHOAL_BAD_REQUEST', `${field}: "${value}" is not a time (ISO 8601 or ms)`);
  return ms;
}
