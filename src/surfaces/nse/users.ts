import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { ROLES } from '../../core/accounts.js';
import type { Core } from '../../core/index.js';
import type { TenancyRequest, UserSortKey } from '../../core/user-admin.js';
import { authOf } from '../auth-context.js';
import { requestMeta } from '../request-meta.js';
import { StringEnum } from '../schema-helpers.js';
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
import { UserRecord, userRecord } from './records.js';

const USER_SORT: readonly UserSortKey[] = ['created', 'username'];

const UserParam = Type.Object({
  id: Type.String({
    minLength: 1,
    maxLength: 256,
    description: 'The user id, or the user name (case-insensitive)',
  }),
});

const TenancyInput = Type.Object({
  tenant_id: Type.String({ minLength: 1, maxLength: 64 }),
  role_name: StringEnum(ROLES, { description: 'user, admin, read, partner or root' }),
});

// Limits here only keep absurd bodies out early; core checks the real rules.
const profileFields = {
  firstName: Type.Optional(Type.String({ maxLength: 1024 })),
  lastName: Type.Optional(Type.String({ maxLength: 1024 })),
  displayName: Type.Optional(Type.String({ maxLength: 1024 })),
  email: Type.Optional(Type.String({ maxLength: 1024 })),
  phone: Type.Optional(Type.String({ maxLength: 1024 })),
  profileImageURL: Type.Optional(Type.String({ maxLength: 4096, description: 'Accepted and not kept' })),
  tenant_id: Type.Optional(
    Type.String({ minLength: 1, maxLength: 64, description: 'Primary tenant; must be one of tenancies' }),
  ),
};

const CreateBody = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 128 }),
  password: Type.Optional(
    Type.String({ maxLength: 4096, description: 'Required for local users; none for directory users' }),
  ),
  ...profileFields,
  tenancies: Type.Array(TenancyInput, { minItems: 1, maxItems: 256 }),
  provider: Type.Optional(StringEnum(['local', 'activeDirectory'] as const, { default: 'local' })),
  provider_data: Type.Optional(Type.Unknown({ description: 'Directory details; accepted and not kept' })),
});

const UpdateBody = Type.Object({
  username: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
  password: Type.Optional(
    Type.String({ maxLength: 4096, description: "Set by an administrator: ends all the user's sessions" }),
  ),
  ...profileFields,
  tenancies: Type.Optional(
    Type.Array(TenancyInput, {
      minItems: 1,
      maxItems: 256,
      description: 'The entire new set: tenancies left out are removed',
    }),
  ),
  active: Type.Optional(
    Type.Boolean({
      description:
        'Gatehouse extension: false deactivates the user (no sign-in; its sessions end), true reactivates it',
    }),
  ),
});

const NoBody = (description: string) => Type.Unsafe<undefined>({ description });

const tenancyRequests = (tenancies: readonly { tenant_id: string; role_name: TenancyRequest['role'] }[]) =>
  tenancies.map((t) => ({ tenantId: t.tenant_id, role: t.role_name }));

/** `/users`: the users administration, scoped by the caller's tenancies. */
export const userRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);

  app.get(
    '/users',
    {
      onRequest: authenticate,
      schema: {
        tags: ['NSE users'],
        summary: 'List the users the caller may see (root: all; a user: itself), optionally of one tenant',
        security: NSE_SECURITY,
        querystring: listQuerySchema(USER_SORT, {
          tenant_id: Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 64,
              description: 'Only users with a tenancy in this tenant',
            }),
          ),
          // The reference's "Retrieve a user by ID" and "by user name" name the path /v2.1/users
          // with the parameter `id` or `username`: as filters, they answer that one user or none.
          id: Type.Optional(
            Type.String({ minLength: 1, maxLength: 64, description: 'Only the user of this id' }),
          ),
          username: Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 256,
              description: 'Only the user of this name (case-insensitive)',
            }),
          ),
        }),
        response: { 200: ListEnvelope(UserRecord), ...NSE_ERRORS },
      },
    },
    async (request) => {
      const list = await core.userAdmin.list(authOf(request), toListQuery(request.query), {
        tenantId: request.query.tenant_id,
        id: request.query.id,
        username: request.query.username,
      });
      return listed({ ...list, records: list.records.map(userRecord) });
    },
  );

  app.get(
    '/users/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: ['NSE users'],
        summary: 'Get a user by id or by user name',
        security: NSE_SECURITY,
        params: UserParam,
        response: { 200: RecordEnvelope(UserRecord), ...NSE_ERRORS },
      },
    },
    async (request) => single(userRecord(await core.userAdmin.get(authOf(request), request.params.id))),
  );

  app.post(
    '/users',
    {
      onRequest: authenticate,
      schema: {
        tags: ['NSE users'],
        summary: 'Create a user in tenants the caller manages',
        security: NSE_SECURITY,
        body: CreateBody,
        response: { 201: RecordEnvelope(UserRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const { body } = request;
      const user = await core.userAdmin.create(
        authOf(request),
        {
          username: body.username,
          password: body.password,
          firstName: body.firstName,
          lastName: body.lastName,
          displayName: body.displayName,
          email: body.email,
          phone: body.phone,
          provider: body.provider,
          primaryTenantId: body.tenant_id,
          tenancies: tenancyRequests(body.tenancies),
        },
        requestMeta(request),
      );
      reply.code(201);
      return single(userRecord(user), 'Okay. New resource created.', 201);
    },
  );

  app.put(
    '/users/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: ['NSE users'],
        summary:
          "Change a user; a new password ends all the user's sessions, tenancies replace the whole set",
        security: NSE_SECURITY,
        params: UserParam,
        body: UpdateBody,
        response: { 200: RecordEnvelope(UserRecord), ...NSE_ERRORS },
      },
    },
    async (request) => {
      const { body } = request;
      const user = await core.userAdmin.update(
        authOf(request),
        request.params.id,
        {
          username: body.username,
          password: body.password,
          firstName: body.firstName,
          lastName: body.lastName,
          displayName: body.displayName,
          email: body.email,
          phone: body.phone,
          primaryTenantId: body.tenant_id,
          tenancies: body.tenancies && tenancyRequests(body.tenancies),
          active: body.active,
        },
        requestMeta(request),
      );
      return single(userRecord(user));
    },
  );

  app.delete(
    '/users/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: ['NSE users'],
        summary: 'Delete a user; its sessions and API tokens end with it',
        security: NSE_SECURITY,
        params: UserParam,
        response: { 204: NoBody('Deleted'), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await core.userAdmin.delete(authOf(request), request.params.id, requestMeta(request));
      return reply.code(204).send(undefined);
    },
  );

  app.post(
    '/users/:id/unlock',
    {
      onRequest: authenticate,
      schema: {
        tags: ['NSE users'],
        summary:
          'Gatehouse extension: clear the sign-in locks of a user (its own and those of every address that failed on it)',
        security: NSE_SECURITY,
        params: UserParam,
        response: { 200: RecordEnvelope(UserRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      single(
        userRecord(
          await core.lockoutAdmin.unlockUser(authOf(request), request.params.id, requestMeta(request)),
        ),
      ),
  );
};
