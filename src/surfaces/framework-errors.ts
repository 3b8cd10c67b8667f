import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { GatehouseError } from '../errors.js';
import { renderNseError } from './nse/index.js';
import { setSecurityHeaders } from './security-headers.js';
import { isStorwarePath, renderStorwareError } from './storware/index.js';

/**
 * Errors the router raises before any route is chosen (a URL that is not valid percent-encoding,
 * a path segment longer than the router keeps). Fastify would answer them with its own body and
 * without the hooks (so without the security headers); here they get the body of the surface
 * the URL names, and the security headers, like every other answer.
 */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const failure =
    error.code === 'FST_ERR_BAD_URL'
      ? new GatehouseError('VALIDATION_FAILED', 'the URL is not valid: a bad percent-encoding')
      : error.code === 'FST_ERR_MAX_PARAM_LENGTH'
        ? new GatehouseError('VALIDATION_FAILED', 'a path segment is too long')
        : error;
  const storware = isStorwarePath(request.url.split('?')[0] ?? '');
  // The router calls this outside the request lifecycle: no onSend hook will add them.
  setSecurityHeaders(request, reply);
  void (storware ? renderStorwareError : renderNseError)(failure, request, reply);
}
