import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Core } from '../../core/index.js';
import type { JobSortKey } from '../../core/jobs.js';
import { authOf } from '../auth-context.js';
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

const JobTaskRecord = Type.Object({
  id: Type.String(),
  job_id: Type.String(),
  action: Type.String(),
  driver: Type.String(),
  object_id: Type.String(),
  object_type: Type.String(),
  resource_type: Type.String(),
  status: Type.String(),
  status_detail: Type.String(),
  last_error: Type.String(),
  user_id: Type.String(),
  request_payload: Type.Record(Type.String(), Type.Unsafe({ type: ['string', 'number', 'boolean', 'null'] })),
});

export const JobRecord = Type.Object({
  id: Type.String(),
  action: Type.String(),
  job_summary: Type.String(),
  created: Type.String(),
  updated: Type.String(),
  object_id: Type.String(),
  object_type: Type.String(),
  object_name: Type.String(),
  status: Type.String(),
  status_detail: Type.String(),
  last_error: Type.String(),
  progress: Type.Integer(),
  user_id: Type.String(),
  tenant_id: Type.String(),
  job_tasks: Type.Array(JobTaskRecord),
});

const JOB_SORT: readonly JobSortKey[] = ['created', 'updated', 'action', 'status'];

/** `/jobs`: records of asynchronous operations, scoped to the caller's tenants. */
export const jobRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);

  app.get(
    '/jobs',
    {
      onRequest: authenticate,
      schema: {
        tags: ['NSE jobs'],
        summary: "List jobs of the caller's tenants (root: all), optionally of one tenant",
        security: NSE_SECURITY,
        querystring: listQuerySchema(JOB_SORT, {
          tenant_id: Type.Optional(
            Type.String({ minLength: 1, maxLength: 64, description: 'Only jobs of this tenant' }),
          ),
        }),
        response: { 200: ListEnvelope(JobRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      listed(
        await core.jobs.list(authOf(request), toListQuery(request.query), {
          tenantId: request.query.tenant_id,
        }),
      ),
  );

  app.get(
    '/jobs/:id',
    {
      onRequest: authenticate,
      schema: {
        tags: ['NSE jobs'],
        summary: 'Get a job by id',
        security: NSE_SECURITY,
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 200: RecordEnvelope(JobRecord), ...NSE_ERRORS },
      },
    },
    async (request) => single(await core.jobs.get(authOf(request), request.params.id)),
  );
};
