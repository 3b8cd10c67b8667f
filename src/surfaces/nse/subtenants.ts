import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Core } from '../../core/index.js';
import type { SubtenantSortKey } from '../../core/subtenants.js';
import { authOf } from '../auth-context.js';
import { requestMeta } from '../request-meta.js';
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

const SubtenantRecord = Type.Object({
  id: Type.String(),
  description: Type.String(),
  name: Type.String(),
  code: Type.String(),
  tenant_id: Type.String(),
  tenant: Type.String({ description: 'Name of the tenant' }),
});

const SubtenantCreateBody = Type.Object({
  name: Type.String({ description: 'Display name (1-255 characters)' }),
  code: Type.String({ description: 'Unique within the tenant: lower-case letters, digits and _ (1-64)' }),
  tenant_id: Type.String({ description: 'The tenant the subtenant belongs to' }),
  description: Type.Optional(Type.String({ description: 'Up to 1024 characters' })),
});

const SubtenantUpdateBody = Type.Object({
  name: Type.Optional(Type.String()),
  description: Type.Optional(Type.String()),
  code: Type.Optional(Type.String({ description: "The subtenant's code; it cannot be changed" })),
  tenant_id: Type.Optional(Type.String({ description: "The subtenant's tenant; it cannot be changed" })),
});

const NoContent = Type.Unsafe<undefined>({ description: 'Deleted' });

const SUBTENANT_SORT: readonly SubtenantSortKey[] = ['created', 'name', 'code'];
const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const TAGS = ['NSE subtenants'];

/** `/subtenants`: root manages all; admins and partners those of their tenants; `read` reads them. */
export const subtenantRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);

  app.get(
    '/subtenants',
    {
      onRequest: authenticate,
      schema: {
        tags: TAGS,
        summary: "List subtenants of the caller's tenants (root: all), optionally of one tenant",
        security: NSE_SECURITY,
        querystring: listQuerySchema(SUBTENANT_SORT, {
          tenant_id: Type.Optional(
            Type.String({ minLength: 1, maxLength: 64, description: 'Only subtenants of this tenant' }),
          ),
        }),
        response: { 200: ListEnvelope(SubtenantRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      listed(
        await core.subtenants.list(authOf(request), toListQuery(request.query), {
          tenantId: request.query.tenant_id,
        }),
      ),
  );

  app.get(
    '/subtenants/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: TAGS,
        summary: 'Get a subtenant by id',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 200: RecordEnvelope(SubtenantRecord), ...NSE_ERRORS },
      },
    },
    async (request) => single(await core.subtenants.get(authOf(request), request.params.id)),
  );

  app.post(
    '/subtenants',
    {
      onRequest: authenticate,
      schema: {
        tags: TAGS,
        summary: 'Create a subtenant in a tenant the caller manages',
        security: NSE_SECURITY,
        body: SubtenantCreateBody,
        response: { 201: RecordEnvelope(SubtenantRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const subtenant = await core.subtenants.create(
        authOf(request),
        { tenantId: body.tenant_id, code: body.code, name: body.name, description: body.description },
        requestMeta(request),
      );
      reply.code(201);
      return single(subtenant, 'Okay. New resource created.', 201);
    },
  );

  app.put(
    '/subtenants/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: TAGS,
        summary: 'Change the name or description of a subtenant',
        security: NSE_SECURITY,
        params: IdParam,
        body: SubtenantUpdateBody,
        response: { 200: RecordEnvelope(SubtenantRecord), ...NSE_ERRORS },
      },
    },
    async (request) => {
      const body = request.body;
      return single(
        await core.subtenants.update(
          authOf(request),
          request.params.id,
          { name: body.name, description: body.description, code: body.code, tenantId: body.tenant_id },
          requestMeta(request),
        ),
      );
    },
  );

  app.delete(
    '/subtenants/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: TAGS,
        summary: 'Delete a subtenant',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 204: NoContent, ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await core.subtenants.remove(authOf(request), request.params.id, requestMeta(request));
      return reply.code(204).send(undefined);
    },
  );
};
