import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Core } from '../../core/index.js';
import type { NodeSortKey } from '../../core/node-admin.js';
import { authOf } from '../auth-context.js';
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

const NodeRecord = Type.Object({
  id: Type.String(),
  login: Type.String(),
  version: NullableString({ description: 'Reported at its last login; null before the first' }),
  active: Type.Boolean(),
  last_seen: NullableString({ description: 'ISO 8601 of its last login; null: never' }),
  created: Type.String({ description: 'ISO 8601' }),
});

const Password = Type.String({ maxLength: 4096, description: 'The password policy applies' });
const CreateBody = Type.Object({
  login: Type.String({
    maxLength: 256,
    description: '1-128 letters, digits or . _ @ -; unique, case-insensitive',
  }),
  password: Password,
});
const UpdateBody = Type.Object({
  active: Type.Optional(
    Type.Boolean({ description: 'false ends its sessions at once and refuses its logins' }),
  ),
  password: Type.Optional(Password),
});

const NODE_SORT: readonly NodeSortKey[] = ['created', 'login', 'last_seen'];
const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const NoContent = Type.Unsafe<undefined>({ description: 'Deleted' });

/** `/nodes`: backup-node agent accounts. They belong to no tenant: root only. */
export const nodeRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);
  const tags = ['NSE backup nodes'];

  app.post(
    '/nodes',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Register a backup-node account (root only)',
        security: NSE_SECURITY,
        body: CreateBody,
        response: { 201: RecordEnvelope(NodeRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const created = await core.nodeAdmin.create(authOf(request), requestMeta(request), {
        login: request.body.login,
        password: request.body.password,
      });
      reply.code(201);
      return single(created, 'Okay. New resource created.', 201);
    },
  );

  app.get(
    '/nodes',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'List backup-node accounts (root only)',
        security: NSE_SECURITY,
        querystring: listQuerySchema(NODE_SORT),
        response: { 200: ListEnvelope(NodeRecord), ...NSE_ERRORS },
      },
    },
    async (request) => listed(await core.nodeAdmin.list(authOf(request), toListQuery(request.query))),
  );

  app.get(
    '/nodes/:id',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Get a backup-node account by id (root only)',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 200: RecordEnvelope(NodeRecord), ...NSE_ERRORS },
      },
    },
    async (request) => single(await core.nodeAdmin.get(authOf(request), request.params.id)),
  );

  app.put(
    '/nodes/:id',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Activate or deactivate a node, or set its password; either ends its sessions (root only)',
        security: NSE_SECURITY,
        params: IdParam,
        body: UpdateBody,
        response: { 200: RecordEnvelope(NodeRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      single(
        await core.nodeAdmin.update(authOf(request), requestMeta(request), request.params.id, {
          active: request.body.active,
          password: request.body.password,
        }),
      ),
  );

  app.delete(
    '/nodes/:id',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Delete a backup-node account and end its sessions (root only)',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 204: NoContent, ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await core.nodeAdmin.delete(authOf(request), requestMeta(request), request.params.id);
      return reply.code(204).send(undefined);
    },
  );
};
