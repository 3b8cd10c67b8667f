import type { FastifyInstance } from 'fastify';
import { GatehouseError } from '../errors.js';

/**
 * Calls without a body (logout, refresh, the DELETEs) arrive with whatever content type their
 * client sets: the Storware reference sends `*\/*`, curl's `-d ''` a form type. An empty body of
 * any type is taken as no body; a non-empty one that is not JSON is refused with 415, text/plain
 * too (Fastify's own text parser would hand the JSON routes a string to refuse as "not an object").
 * Registered per scope: the users import parses its own media types.
 */
export function acceptBodylessRequestsOfAnyType(app: FastifyInstance): void {
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('*', { parseAs: 'string' }, (_request, body, done) => {
    if (body === '') return done(null, undefined);
    done(new GatehouseError('UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json'), undefined);
  });
}
