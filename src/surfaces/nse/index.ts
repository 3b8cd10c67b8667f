import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Core } from '../../core/index.js';
import { acceptBodylessRequestsOfAnyType } from '../bodyless-requests.js';
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

  // Every route but the import, which parses its own media types.
  await app.register(async (scope) => {
    acceptBodylessRequestsOfAnyType(scope);
    await scope.register(authRoutes, { core });
    await scope.register(catalogRoutes, { core });
    await scope.register(catalogAdminRoutes, { core });
    await scope.register(jobRoutes, { core });
    await scope.register(sessionRoutes, { core });
    await scope.register(tokenRoutes, { core });
    await scope.register(nodeRoutes, { core });
    await scope.register(tenantRoutes, { core });
    await scope.register(subtenantRoutes, { core });
    await scope.register(auditEventRoutes, { core });
    await scope.register(userRoutes, { core });
    await scope.register(accessManagementRoutes, { core });
  });
  await app.register(userImportRoutes, { core });
};

/** Renders any error in the NSE envelope; also the handler of paths outside both surfaces. */
export async function renderNseError(error: unknown, request: FastifyRequest, reply: FastifyReply) {
  const failure = toGatehouseError(error, request);
  if (failure.status === 401) reply.header('WWW-Authenticate', challengeOf(request));
  return reply.code(failure.status).headers(failure.headers).send(errorBody(failure));
}

const BEARER_CHALLENGE = 'Bearer realm="gatehouse"';
const BEARER_OR_BASIC = `${BEARER_CHALLENGE}, Basic realm="gatehouse", charset="UTF-8"`;
/** The modes of a browser's script requests (fetch, XMLHttpRequest); navigations are `navigate`. */
const SCRIPT_FETCH_MODES: ReadonlySet<string> = new Set(['cors', 'no-cors', 'same-origin']);

/**
 * NSE's authenticated routes take HTTP Basic as well as Bearer tokens, and clients that send
 * credentials only once challenged (.NET's HttpClientHandler.Credentials, Java's Authenticator)
 * need a Basic challenge to send them. It is given only where Basic is taken (not by the sign-in
 * and password routes, whose credentials are in the body: such a client would send the same
 * wrong password again, counted twice; nor by /metrics), and left out where it would do harm: a
 * client that came with a Bearer token wants a new token, not a password, and a browser's script
 * (Sec-Fetch-Mode) would have the browser open its own password dialog over the page.
 */
function challengeOf(request: FastifyRequest): string {
  if (!request.basicAccepted) return BEARER_CHALLENGE;
  const scheme = request.headers.authorization?.trimStart().split(' ', 1)[0]?.toLowerCase();
  const fetchMode = request.headers['sec-fetch-mode'];
  const script = typeof fetchMode === 'string' && SCRIPT_FETCH_MODES.has(fetchMode.toLowerCase());
  return scheme === 'bearer' || script ? BEARER_CHALLENGE : BEARER_OR_BASIC;
}
