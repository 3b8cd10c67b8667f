import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { AuditSortKey } from '../../core/audit.js';
import type { Core } from '../../core/index.js';
import { GatehouseError } from '../../errors.js';
import { authOf } from '../auth-context.js';
import { nseAuthenticator } from './authenticate.js';
import { ListEnvelope, listed, listQuerySchema, NSE_ERRORS, NSE_SECURITY, toListQuery } from './envelope.js';

const AuditEventRecord = Type.Object({
  id: Type.String(),
  time: Type.String({ description: 'ISO 8601' }),
  actor_type: Type.String({
    description: 'user, node, system, or anonymous (a sign-in nobody could be matched to)',
  }),
  actor_id: Type.String(),
  actor_name: Type.String(),
  action: Type.String(),
  target_type: Type.String(),
  target_id: Type.String(),
  target_name: Type.String(),
  tenant_id: Type.String(),
  ip: Type.String(),
  outcome: Type.String({ description: 'success or failure' }),
  reason: Type.String({ description: 'why a sign-in failed, for operators' }),
});

const AUDIT_SORT: readonly AuditSortKey[] = ['created', 'action'];
const Filter = (description: string) =>
  Type.Optional(Type.String({ minLength: 1, maxLength: 256, description }));

/** The latest time a JavaScript Date holds (ECMA-262 §21.4.1.1): 275760-09-13, in epoch ms. */
const LATEST_INSTANT_MS = 8.64e15;

/**
 * "2026-11-23T10:00:00Z" or epoch milliseconds. Digits past any time a Date holds are refused, not
 * passed on: PostgreSQL's bigint cannot take 1e23, and that was a 500 there (found by fuzzing).
 */
function instant(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = /^\d+$/.test(text) ? Number(text) : Date.parse(text);
  if (!Number.isFinite(value) || Math.abs(value) > LATEST_INSTANT_MS) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      `querystring/${name} must be an ISO 8601 time or epoch milliseconds`,
    );
  }
  return value;
}

/** `/audit-events`: the append-only audit log, scoped to the tenants the caller may read (root: all). */
export const auditEventRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  app.get(
    '/audit-events',
    {
      onRequest: nseAuthenticator(core),
      schema: {
        tags: ['NSE audit'],
        summary: 'List audit events, newest first, with filters',
        security: NSE_SECURITY,
        querystring: listQuerySchema(AUDIT_SORT, {
          actor: Filter('Actor id or name'),
          action: Filter('Action, such as signin or user.update'),
          target: Filter('Target id or name'),
          tenant_id: Filter('Only events of this tenant'),
          from: Filter('Events at or after this time (ISO 8601 or epoch ms)'),
          to: Filter('Events before this time (ISO 8601 or epoch ms)'),
        }),
        response: { 200: ListEnvelope(AuditEventRecord), ...NSE_ERRORS },
      },
    },
    async (request) => {
      const { query } = request;
      return listed(
        await core.audit.list(authOf(request), toListQuery(query), {
          actor: query.actor,
          action: query.action,
          target: query.target,
          tenantId: query.tenant_id,
          from: instant('from', query.from),
          to: instant('to', query.to),
        }),
      );
    },
  );
};
