import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { ApiTokenSortKey } from '../../core/api-token-admin.js';
import type { Core } from '../../core/index.js';
import { authOf } from '../auth-context.js';
import { rateLimited } from '../rate-limit.js';
import { requestMeta } from '../request-meta.js';
import { NullableString } from '../schema-helpers.js';
import { nseAuthenticator } from './authenticate.js';
import {
  ListEnvelope,
  listed,
  listQuerySchema,
  NSE_ERRORS,
  NSE_SECURITY,
  RecordEnvelope,
  single,
  toListQuery,
} from './envelope.js';

const tokenFields = {
  id: Type.String(),
  name: Type.String(),
  user_id: Type.String({ description: 'The user the token signs in as' }),
  created_by: Type.String({
    description:
      "The user who made it ('' for the CLI's). Made for another user, it works while its maker still manages that user",
  }),
  created: Type.String({ description: 'ISO 8601' }),
  expires: NullableString({ description: 'ISO 8601; null: does not expire' }),
  last_used: NullableString({ description: 'ISO 8601 of the last login-with-token; null: never used' }),
  revoked: Type.Boolean(),
};

// The list and get records have no room for a secret: the serializer drops what is not here.
const TokenRecord = Type.Object(tokenFields);
const CreatedTokenRecord = Type.Object({
  ...tokenFields,
  token: Type.String({
    description:
      'The secret for POST /api/session/login-with-token. Shown in this answer only; keep it safe.',
  }),
});

const CreateBody = Type.Object({
  name: Type.String({ maxLength: 1024, description: 'A label to recognise the token by (1-128 characters)' }),
  expires_in: Type.Optional(
    Type.String({ maxLength: 64, description: 'Lifetime such as 12h or 30d; at most 3650 days' }),
  ),
  expires_at: Type.Optional(
    Type.String({ maxLength: 64, description: 'Expiry as ISO 8601, e.g. 2030-01-31T12:00:00Z' }),
  ),
  user_id: Type.Optional(
    Type.String({ minLength: 1, maxLength: 64, description: 'Issue it for a user the caller manages' }),
  ),
});

const TOKEN_SORT: readonly ApiTokenSortKey[] = ['created', 'name', 'expires', 'last_used'];
const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const NoContent = Type.Unsafe<undefined>({ description: 'Revoked' });

/** `/tokens`: API tokens for scripts; a user's own, and those of the users an admin manages. */
export const tokenRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);
  const tags = ['NSE API tokens'];

  app.post(
    '/tokens',
    {
      // Each token made is a row and an audit event kept: the per-user cap bounds those alive, this
      // the rate of making and revoking them (found by review: 437 made and revoked in 3 s).
      onRequest: [rateLimited(core, 'tokens'), authenticate],
      schema: {
        tags,
        summary: 'Create an API token; its secret is in this answer only',
        security: NSE_SECURITY,
        body: CreateBody,
        response: { 201: RecordEnvelope(CreatedTokenRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const created = await core.apiTokenAdmin.create(authOf(request), requestMeta(request), {
        name: request.body.name,
        expiresIn: request.body.expires_in,
        expiresAt: request.body.expires_at,
        userId: request.body.user_id,
      });
      // A secret must not sit in a cache on the way back.
      reply.header('Cache-Control', 'no-store');
      reply.code(201);
      return single({ ...created.view, token: created.token }, 'Okay. New resource created.', 201);
    },
  );

  app.get(
    '/tokens',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary:
          "List API tokens (never their secrets): the caller's own, or with user_id a managed user's; with created_by, those the caller or a managed user made, whoever holds them",
        security: NSE_SECURITY,
        querystring: listQuerySchema(TOKEN_SORT, {
          user_id: Type.Optional(
            Type.String({ minLength: 1, maxLength: 64, description: 'A user the caller manages' }),
          ),
          created_by: Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 64,
              description: 'The tokens this user (the caller, or one it manages) made, for itself or others',
            }),
          ),
        }),
        response: { 200: ListEnvelope(TokenRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      listed(
        await core.apiTokenAdmin.list(authOf(request), toListQuery(request.query), {
          userId: request.query.user_id,
          createdBy: request.query.created_by,
        }),
      ),
  );

  app.get(
    '/tokens/:id',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Get an API token by id (never its secret)',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 200: RecordEnvelope(TokenRecord), ...NSE_ERRORS },
      },
    },
    async (request) => single(await core.apiTokenAdmin.get(authOf(request), request.params.id)),
  );

  app.delete(
    '/tokens/:id',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Revoke an API token and end the sessions opened with it',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 204: NoContent, ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await core.apiTokenAdmin.revoke(authOf(request), requestMeta(request), request.params.id);
      return reply.code(204).send(undefined);
    },
  );
};
