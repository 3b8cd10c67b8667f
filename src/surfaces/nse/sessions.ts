import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Core } from '../../core/index.js';
import type { SessionSortKey } from '../../core/session-admin.js';
import { authOf } from '../auth-context.js';
import { requestMeta } from '../request-meta.js';
import { StringEnum } from '../schema-helpers.js';
import { nseAuthenticator } from './authenticate.js';
import { ListEnvelope, listed, listQuerySchema, NSE_ERRORS, NSE_SECURITY, toListQuery } from './envelope.js';

const SessionRecord = Type.Object({
  id: Type.String(),
  kind: StringEnum(['user', 'node', 'token'] as const, {
    description: 'How it was opened: password sign-in, backup-node login, or API token',
  }),
  created: Type.String({ description: 'ISO 8601' }),
  last_seen: Type.String({ description: 'ISO 8601; updated at most once a minute' }),
  expires: Type.String({ description: 'ISO 8601: the absolute end; idleness may end it sooner' }),
  ip: Type.String(),
  user_agent: Type.String(),
  current: Type.Boolean({ description: 'The session of this request (never with HTTP Basic)' }),
});

const SESSION_SORT: readonly SessionSortKey[] = ['created', 'last_seen', 'expires'];

const UserIdQuery = Type.Optional(
  Type.String({
    minLength: 1,
    maxLength: 64,
    description: "A user the caller manages (default: the caller's own sessions)",
  }),
);

const NoContent = Type.Unsafe<undefined>({ description: 'Ended' });

/** `/sessions`: one's own live sessions, and those of the users one manages. */
export const sessionRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);
  const tags = ['NSE sessions'];

  app.get(
    '/sessions',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: "List live sessions: the caller's own, or with user_id those of a managed user",
        security: NSE_SECURITY,
        querystring: listQuerySchema(SESSION_SORT, { user_id: UserIdQuery }),
        response: { 200: ListEnvelope(SessionRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      listed(
        await core.sessionAdmin.list(authOf(request), toListQuery(request.query), {
          userId: request.query.user_id,
        }),
      ),
  );

  app.delete(
    '/sessions',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary:
          "End every session of the caller but the current one (HTTP Basic: all of them), or with user_id all of a managed user's",
        security: NSE_SECURITY,
        querystring: Type.Object({ user_id: UserIdQuery }),
        response: { 204: NoContent, ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await core.sessionAdmin.endAll(authOf(request), requestMeta(request), {
        userId: request.query.user_id,
      });
      return reply.code(204).send(undefined);
    },
  );

  app.delete(
    '/sessions/:id',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'End one session: its tokens and cookie stop working on both APIs',
        security: NSE_SECURITY,
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 204: NoContent, ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await core.sessionAdmin.end(authOf(request), requestMeta(request), request.params.id);
      return reply.code(204).send(undefined);
    },
  );
};
