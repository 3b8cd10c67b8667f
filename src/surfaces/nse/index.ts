import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Core } from '../../core/index.js';
import { GatehouseError } from '../../errors.js';
import { toGatehouseError } from '../http-errors.js';
import { authRoutes } from './auth.js';
import { catalogRoutes } from './catalog.js';
import { errorBody } from './envelope.js';
import { jobRoutes } from './jobs.js';

export const NSE_PREFIX = '/api/v2.1';

/** The NSE v2.1 surface: every answer, errors included, in the NSE envelope. */
export const nseSurface: FastifyPluginAsyncTypebox<{
  core: Core;
  allowedMethods: (method: string, url: string) => string[];
}> = async (app, { core, allowedMethods }) => {
  app.setErrorHandler(async (error, request, reply) => {
    const failure = toGatehouseError(error, request);
    if (failure.status === 401) reply.header('WWW-Authenticate', 'Bearer realm="gatehouse"');
    return reply
      .code(failure.status)
      .headers(failure.headers)
      .send(
        errorBody(
          failure.status,
          failure.userMessage,
          failure.detail ? `${failure.code}: ${failure.detail}` : failure.code,
        ),
      );
  });

  app.setNotFoundHandler(async (request) => {
    throw notFoundOrNotAllowed(request.method, request.url, allowedMethods);
  });

  await app.register(authRoutes, { core });
  await app.register(catalogRoutes, { core });
  await app.register(jobRoutes, { core });
};

export function notFoundOrNotAllowed(
  method: string,
  url: string,
  allowedMethods: (method: string, url: string) => string[],
): GatehouseError {
  const allowed = allowedMethods(method, url);
  if (allowed.length > 0) {
    return new GatehouseError(
      'METHOD_NOT_ALLOWED',
      `${method} is not allowed here; use ${allowed.join(', ')}`,
      {
        Allow: allowed.join(', '),
      },
    );
  }
  return new GatehouseError('ROUTE_NOT_FOUND', `no endpoint ${method} ${url.split('?')[0]?.slice(0, 200)}`);
}
