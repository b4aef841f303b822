/** /api/v1/keys: list, make and revoke API keys (admin keys only). */

import type { FastifyPluginAsync } from 'fastify';
import Type from 'typebox';
import type { ApiKeys } from './auth.ts';

const KeyRecord = Type.Object({
  id: Type.String(),
  name: Type.String(),
  scope: Type.Union([Type.Literal('admin'), Type.Literal('read')]),
  createdAt: Type.String(),
  builtin: Type.Optional(Type.Boolean()),
});

export const keyRoutes: FastifyPluginAsync<{ keys: ApiKeys }> = async (app, { keys }) => {
  app.get(
    '/keys',
    { schema: { response: { 200: Type.Object({ keys: Type.Array(KeyRecord) }) } } },
    async () => ({
      keys: keys.list(),
    }),
  );

  app.post<{ Body: { name: string; scope: 'admin' | 'read' } }>(
    '/keys',
    {
      schema: {
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 128 }),
            scope: Type.Union([Type.Literal('admin'), Type.Literal('read')]),
          },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ ...KeyRecord.properties, key: Type.String() }) },
      },
    },
    async (request, reply) => reply.status(201).send(keys.create(request.body.name, request.body.scope)),
  );

  app.delete<{ Params: { id: string } }>(
    '/keys/:id',
    {
      schema: {
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: Type.Object({ id: Type.String(), revoked: Type.Literal(true) }) },
      },
    },
    async (request) => {
      keys.revoke(request.params.id);
      return { id: request.params.id, revoked: true as const };
    },
  );
};
