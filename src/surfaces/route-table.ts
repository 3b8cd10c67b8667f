import type { FastifyInstance } from 'fastify';
import FindMyWay, { type HTTPMethod } from 'find-my-way';
import { GatehouseError } from '../errors.js';

const METHODS: HTTPMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

export interface RouteEntry {
  readonly method: string;
  readonly url: string;
  /** Hidden from the OpenAPI document (the document itself, the docs UI). */
  readonly hidden: boolean;
}

export interface RouteTable {
  /** Methods that would match this URL, other than `method`: tells 404 from 405. */
  allowedMethods(method: string, url: string): string[];
  entries(): readonly RouteEntry[];
}

/**
 * Fastify answers an unrouted method with 404; the NSE reference lists 405. This keeps a shadow
 * router of every route's path so that the not-found handlers can tell "no such path" from
 * "path exists, wrong method" and list the allowed methods. It also lists every route, so a test
 * can check that the OpenAPI document covers them all.
 */
export function trackRoutes(app: FastifyInstance): RouteTable {
  const router = FindMyWay({ ignoreTrailingSlash: true });
  const entries: RouteEntry[] = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      entries.push({ method, url: route.url, hidden: route.schema?.hide === true });
      if (!METHODS.includes(method as HTTPMethod)) continue;
      try {
        router.on(method as HTTPMethod, route.url, () => {});
      } catch {
        // The same path and method registered twice (HEAD alongside GET): already known.
      }
    }
  });
  return {
    allowedMethods(method, url) {
      const path = url.split('?')[0] ?? url;
      // The route exists for this very method and its handler found nothing (a static file under
      // /docs): that is a 404, not a 405.
      if (METHODS.includes(method as HTTPMethod) && router.find(method as HTTPMethod, path) !== null)
        return [];
      return METHODS.filter((m) => m !== method && router.find(m, path) !== null);
    },
    entries: () => entries,
  };
}

/** The error for an unrouted request: 405 with `Allow` when the path exists, else 404. */
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
