import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Core } from '../../core/index.js';
import type { ErrorCode, GatehouseError } from '../../errors.js';
import { acceptBodylessRequestsOfAnyType } from '../bodyless-requests.js';
import { toGatehouseError } from '../http-errors.js';
import { notFoundOrNotAllowed } from '../route-table.js';
import { sessionRoutes } from './session.js';

export const STORWARE_PREFIX = '/api/session';

/** Whether a request's path (without its query) belongs to the Storware surface. */
export const isStorwarePath = (path: string): boolean =>
  path === STORWARE_PREFIX || path.startsWith(`${STORWARE_PREFIX}/`);

/**
 * Live Storware answers a failed login with 400 (its own automation accepts only 200 or 400),
 * where the registry's status for these codes is 401.
 */
const LOGIN_FAILURES: ReadonlySet<ErrorCode> = new Set(['INVALID_CREDENTIALS', 'INVALID_API_TOKEN']);

/** Renders any error as a Storware error body: `{"errorCode","message"}`. */
export async function renderStorwareError(error: unknown, request: FastifyRequest, reply: FastifyReply) {
  const failure = toGatehouseError(error, request);
  const status = LOGIN_FAILURES.has(failure.code) ? 400 : failure.status;
  return reply.code(status).headers(failure.headers).send(storwareErrorBody(failure));
}

export function storwareErrorBody(failure: GatehouseError) {
  return {
    errorCode: failure.code,
    message: failure.detail ? `${failure.userMessage} (${failure.detail})` : failure.userMessage,
  };
}

/** The Storware session surface: errors are `{"errorCode","message"}`. */
export const storwareSurface: FastifyPluginAsyncTypebox<{
  core: Core;
  allowedMethods: (method: string, url: string) => string[];
}> = async (app, { core, allowedMethods }) => {
  app.setErrorHandler(renderStorwareError);

  // The reference sends the bodiless session calls (logout, ...) with "Content-Type: */*".
  acceptBodylessRequestsOfAnyType(app);

  app.setNotFoundHandler(async (request) => {
    throw notFoundOrNotAllowed(request.method, request.url, allowedMethods);
  });

  await app.register(sessionRoutes, { core });
};
