import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Core } from '../../core/index.js';
import type { TenantSortKey } from '../../core/tenants.js';
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
import { JobRecord } from './jobs.js';

// `usage` is null: Gatehouse keeps no usage data (the reference's create and modify answers show null).
const TenantRecord = Type.Object({
  id: Type.String(),
  name: Type.String(),
  zuora_account_name: Type.String(),
  zuora_account_number: Type.String(),
  description: Type.String(),
  code: Type.String(),
  usage: Type.Null(),
});

const CODE_RULE = 'lower-case letters, digits and _ (1-64)';
const TenantCreateBody = Type.Object({
  code: Type.String({ description: `Tenant code: ${CODE_RULE}` }),
  name: Type.String({ description: 'Display name (1-255 characters)' }),
  zuora_account_name: Type.String({ description: 'Billing account name (may be empty)' }),
  zuora_account_number: Type.String({ description: 'Billing subscription number (may be empty)' }),
  description: Type.Optional(Type.String({ description: 'Up to 1024 characters' })),
});

const TenantUpdateBody = Type.Object({
  code: Type.Optional(Type.String({ description: "The tenant's code; it cannot be changed" })),
  name: Type.Optional(Type.String()),
  zuora_account_name: Type.Optional(Type.String()),
  zuora_account_number: Type.Optional(Type.String()),
  description: Type.Optional(Type.String()),
});

const TENANT_SORT: readonly TenantSortKey[] = ['created', 'name', 'code'];
const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const TAGS = ['NSE tenants'];

/** `/tenants`: root creates and deletes tenants; members see theirs; admins and partners change theirs. */
export const tenantRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);

  app.get(
    '/tenants',
    {
      onRequest: authenticate,
      schema: {
        tags: TAGS,
        summary: 'List tenants: root sees all, others the tenants they belong to',
        security: NSE_SECURITY,
        querystring: listQuerySchema(TENANT_SORT),
        response: { 200: ListEnvelope(TenantRecord), ...NSE_ERRORS },
      },
    },
    async (request) => listed(await core.tenants.list(authOf(request), toListQuery(request.query))),
  );

  app.get(
    '/tenants/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: TAGS,
        summary: 'Get a tenant by id',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 200: RecordEnvelope(TenantRecord), ...NSE_ERRORS },
      },
    },
    async (request) => single(await core.tenants.get(authOf(request), request.params.id)),
  );

  app.post(
    '/tenants',
    {
      onRequest: authenticate,
      schema: {
        tags: TAGS,
        summary: 'Create a tenant (root only)',
        security: NSE_SECURITY,
        body: TenantCreateBody,
        response: { 201: RecordEnvelope(TenantRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const tenant = await core.tenants.add(
        authOf(request),
        {
          code: body.code,
          name: body.name,
          description: body.description,
          zuoraAccountName: body.zuora_account_name,
          zuoraAccountNumber: body.zuora_account_number,
        },
        requestMeta(request),
      );
      reply.code(201);
      return single(tenant, 'Okay. New resource created.', 201);
    },
  );

  app.put(
    '/tenants/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: TAGS,
        summary: 'Change the name, description or billing fields of a tenant (root, or its admin or partner)',
        security: NSE_SECURITY,
        params: IdParam,
        body: TenantUpdateBody,
        response: { 200: RecordEnvelope(TenantRecord), ...NSE_ERRORS },
      },
    },
    async (request) => {
      const body = request.body;
      return single(
        await core.tenants.update(
          authOf(request),
          request.params.id,
          {
            code: body.code,
            name: body.name,
            description: body.description,
            zuoraAccountName: body.zuora_account_name,
            zuoraAccountNumber: body.zuora_account_number,
          },
          requestMeta(request),
        ),
      );
    },
  );

  app.delete(
    '/tenants/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: TAGS,
        summary:
          'Delete a tenant (root only): answers 202 with the job that removes its subtenants and memberships, then the tenant',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 202: RecordEnvelope(JobRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const job = await core.tenants.requestDeletion(
        authOf(request),
        request.params.id,
        requestMeta(request),
      );
      reply.code(202);
      return single(job, 'Okay. Request accepted.', 202);
    },
  );
};
