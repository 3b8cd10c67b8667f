import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import {
  type AccessSortKey,
  type GroupView,
  MEMBERS_SHOWN,
  type MemberSortKey,
} from '../../core/access-management.js';
import type { Core } from '../../core/index.js';
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
  recordsMessage,
  single,
  toListQuery,
} from './envelope.js';

const PrivilegeRecord = Type.Object({
  code: Type.String(),
  section: Type.String(),
  description: Type.String(),
});

const RoleRecord = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  builtin: Type.Boolean(),
  privileges: Type.Array(Type.String()),
});

const GroupMemberRecord = Type.Object({ id: Type.String(), username: Type.String() });

const GroupRecord = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  builtin: Type.Boolean(),
  roles: Type.Array(Type.Object({ id: Type.String(), name: Type.String() })),
  members: Type.Array(GroupMemberRecord, {
    description: `The first ${MEMBERS_SHOWN} members the caller can see, by username; all of them at /groups/{id}/members`,
  }),
  member_count: Type.Integer({ description: 'How many members the caller can see' }),
});

/** The wire's names for a group. */
const groupRecord = ({ memberCount, ...group }: GroupView) => ({ ...group, member_count: memberCount });

const Name = Type.String({ minLength: 1, maxLength: 128 });
const Description = Type.String({ maxLength: 1024 });
const Ids = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 1000 });
const PrivilegeCodes = Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 1000 });

const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const MemberParam = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64 }),
  userId: Type.String({ minLength: 1, maxLength: 64 }),
});
const NoBody = (description: string) => Type.Unsafe<undefined>({ description });

const SORT: readonly AccessSortKey[] = ['created', 'name'];
const MEMBER_SORT: readonly MemberSortKey[] = ['created', 'username'];
const ROLES = ['NSE access management'];

/** Storware-style roles (sets of privileges) and groups (roles bound to users). */
export const accessManagementRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);
  const access = core.accessManagement;

  app.get(
    '/privileges',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'The catalog of privilege codes roles are made of',
        security: NSE_SECURITY,
        response: { 200: ListEnvelope(PrivilegeRecord), ...NSE_ERRORS },
      },
    },
    async () => {
      const records = access.privileges();
      return listed({
        records,
        total: records.length,
        offset: 0,
        limit: records.length,
        sortBy: 'section',
        order: 'asc',
      });
    },
  );

  app.get(
    '/roles',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'List roles (root or ACCESS_MANAGEMENT_READ)',
        security: NSE_SECURITY,
        querystring: listQuerySchema(SORT),
        response: { 200: ListEnvelope(RoleRecord), ...NSE_ERRORS },
      },
    },
    async (request) => listed(await access.listRoles(authOf(request), toListQuery(request.query))),
  );

  app.get(
    '/roles/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Get a role by id',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 200: RecordEnvelope(RoleRecord), ...NSE_ERRORS },
      },
    },
    async (request) => single(await access.getRole(authOf(request), request.params.id)),
  );

  app.post(
    '/roles',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Create a role from privilege codes (root or ACCESS_MANAGEMENT_WRITE)',
        security: NSE_SECURITY,
        body: Type.Object({
          name: Name,
          description: Type.Optional(Description),
          privileges: Type.Optional(PrivilegeCodes),
        }),
        response: { 201: RecordEnvelope(RoleRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const role = await access.createRole(authOf(request), request.body, requestMeta(request));
      reply.code(201);
      return single(role, 'Okay. New resource created.', 201);
    },
  );

  app.put(
    '/roles/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Change a role; privileges replace the whole set (not on a built-in role)',
        security: NSE_SECURITY,
        params: IdParam,
        body: Type.Object({
          name: Type.Optional(Name),
          description: Type.Optional(Description),
          privileges: Type.Optional(PrivilegeCodes),
        }),
        response: { 200: RecordEnvelope(RoleRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      single(await access.updateRole(authOf(request), request.params.id, request.body, requestMeta(request))),
  );

  app.delete(
    '/roles/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Delete a role; groups holding it lose it (not a built-in role)',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 204: NoBody('Deleted'), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await access.deleteRole(authOf(request), request.params.id, requestMeta(request));
      return reply.code(204).send(undefined);
    },
  );

  app.get(
    '/groups',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'List groups with their roles and the members the caller can see',
        security: NSE_SECURITY,
        querystring: listQuerySchema(SORT),
        response: { 200: ListEnvelope(GroupRecord), ...NSE_ERRORS },
      },
    },
    async (request) => {
      const list = await access.listGroups(authOf(request), toListQuery(request.query));
      return listed({ ...list, records: list.records.map(groupRecord) });
    },
  );

  app.get(
    '/groups/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Get a group by id',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 200: RecordEnvelope(GroupRecord), ...NSE_ERRORS },
      },
    },
    async (request) => single(groupRecord(await access.getGroup(authOf(request), request.params.id))),
  );

  app.post(
    '/groups',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Create a group bound to roles (root or ACCESS_MANAGEMENT_WRITE)',
        security: NSE_SECURITY,
        body: Type.Object({ name: Name, description: Type.Optional(Description), roles: Type.Optional(Ids) }),
        response: { 201: RecordEnvelope(GroupRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const group = await access.createGroup(authOf(request), request.body, requestMeta(request));
      reply.code(201);
      return single(groupRecord(group), 'Okay. New resource created.', 201);
    },
  );

  app.put(
    '/groups/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Change a group; roles replace the whole set',
        security: NSE_SECURITY,
        params: IdParam,
        body: Type.Object({
          name: Type.Optional(Name),
          description: Type.Optional(Description),
          roles: Type.Optional(Ids),
        }),
        response: { 200: RecordEnvelope(GroupRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      single(
        groupRecord(
          await access.updateGroup(authOf(request), request.params.id, request.body, requestMeta(request)),
        ),
      ),
  );

  app.delete(
    '/groups/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Delete a group (not a built-in group); its members lose its roles',
        security: NSE_SECURITY,
        params: IdParam,
        response: { 204: NoBody('Deleted'), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await access.deleteGroup(authOf(request), request.params.id, requestMeta(request));
      return reply.code(204).send(undefined);
    },
  );

  app.put(
    '/groups/:id/members',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Replace the members of a group the caller can see',
        security: NSE_SECURITY,
        params: IdParam,
        body: Type.Object({ user_ids: Ids }),
        response: { 200: RecordEnvelope(GroupRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      single(
        groupRecord(
          await access.replaceMembers(
            authOf(request),
            request.params.id,
            request.body.user_ids,
            requestMeta(request),
          ),
        ),
      ),
  );

  app.get(
    '/groups/:id/members',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'List the members of a group the caller can see, a page at a time',
        security: NSE_SECURITY,
        params: IdParam,
        querystring: listQuerySchema(MEMBER_SORT),
        response: { 200: ListEnvelope(GroupMemberRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      listed(await access.listGroupMembers(authOf(request), request.params.id, toListQuery(request.query))),
  );

  app.post(
    '/groups/:id/members/:userId',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Add a user to a group',
        security: NSE_SECURITY,
        params: MemberParam,
        response: { 200: RecordEnvelope(GroupRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      single(
        groupRecord(
          await access.addMember(
            authOf(request),
            request.params.id,
            request.params.userId,
            requestMeta(request),
          ),
        ),
        recordsMessage(1),
      ),
  );

  app.delete(
    '/groups/:id/members/:userId',
    {
      onRequest: authenticate,
      schema: {
        tags: ROLES,
        summary: 'Remove a user from a group',
        security: NSE_SECURITY,
        params: MemberParam,
        response: { 204: NoBody('Removed'), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await access.removeMember(
        authOf(request),
        request.params.id,
        request.params.userId,
        requestMeta(request),
      );
      return reply.code(204).send(undefined);
    },
  );
};
