import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Core } from '../../core/index.js';

const Health = Type.Object({ status: Type.String() });
const Jwk = Type.Object(
  {
    kty: Type.String(),
    crv: Type.String(),
    x: Type.String(),
    y: Type.String(),
    kid: Type.String(),
    alg: Type.String(),
    use: Type.String(),
  },
  { additionalProperties: false },
);

/** Health, readiness and the public keys of the Endpoints tokens. */
export const opsSurface: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  app.get(
    '/healthz',
    {
      schema: {
        tags: ['Operations'],
        summary: 'Liveness: the process serves requests',
        response: { 200: Health },
      },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['Operations'],
        summary: 'Readiness: the store answers',
        response: { 200: Health, 503: Health },
      },
    },
    async (request, reply) => {
      try {
        await core.store.ping();
        return { status: 'ready' };
      } catch (error) {
        request.log.warn({ err: error }, 'readiness check: store unavailable');
        return reply.code(503).header('Retry-After', '1').send({ status: 'store unavailable' });
      }
    },
  );

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['Operations'],
        summary: 'Public keys that verify the Endpoints tokens (ES256)',
        response: { 200: Type.Object({ keys: Type.Array(Jwk) }) },
      },
    },
    async (_request, reply) => {
      reply.header('Cache-Control', 'public, max-age=300');
      // A key rotated in on another node (or by `gatehouse keys rotate`) is published within a minute.
      await core.keyring.refreshIfDue();
      return { keys: core.keyring.publicJwks() as Array<Record<string, string>> } as never;
    },
  );
};
