import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Core } from '../../core/index.js';
import { toGatehouseError } from '../http-errors.js';
import { notFoundOrNotAllowed } from '../route-table.js';
import { accessManagementRoutes } from './access-management.js';
import { auditEventRoutes } from './audit-events.js';
import { authRoutes } from './auth.js';
import { catalogRoutes } from './catalog.js';
import { catalogAdminRoutes } from './catalog-admin.js';
import { errorBody } from './envelope.js';
import { jobRoutes } from './jobs.js';
import { nodeRoutes } from './nodes.js';
import { sessionRoutes } from './sessions.js';
import { subtenantRoutes } from './subtenants.js';
import { tenantRoutes } from './tenants.js';
import { tokenRoutes } from './tokens.js';
import { userRoutes } from './users.js';
import { userImportRoutes } from './users-import.js';

export const NSE_PREFIX = '/api/v2.1';

/** The NSE v2.1 surface: every answer, errors included, in the NSE envelope. */
export const nseSurface: FastifyPluginAsyncTypebox<{
  core: Core;
  allowedMethods: (method: string, url: string) => string[];
}> = async (app, { core, allowedMethods }) => {
  app.setErrorHandler(renderNseError);

  app.setNotFoundHandler(async (request) => {
    throw notFoundOrNotAllowed(request.method, request.url, allowedMethods);
  });

  await app.register(authRoutes, { core });
  await app.register(catalogRoutes, { core });
  await app.register(catalogAdminRoutes, { core });
  await app.register(jobRoutes, { core });
  await app.register(sessionRoutes, { core });
  await app.register(tokenRoutes, { core });
  await app.register(nodeRoutes, { core });
  await app.register(tenantRoutes, { core });
  await app.register(subtenantRoutes, { core });
  await app.register(auditEventRoutes, { core });
  await app.register(userRoutes, { core });
  await app.register(userImportRoutes, { core });
  await app.register(accessManagementRoutes, { core });
};

/** Renders any error in the NSE envelope; also the handler of paths outside both surfaces. */
export async function renderNseError(error: unknown, request: FastifyRequest, reply: FastifyReply) {
  const failure = toGatehouseError(error, request);
  if (failure.status === 401) reply.header('WWW-Authenticate', 'Bearer realm="gatehouse"');
  return reply.code(failure.status).headers(failure.headers).send(errorBody(failure));
}
