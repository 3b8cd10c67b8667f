import type { FastifyInstance } from 'fastify';
import FindMyWay, { type HTTPMethod } from 'find-my-way';

const METHODS: HTTPMethod[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/**
 * Fastify answers an unrouted method with 404; the NSE reference lists 405. This keeps a shadow
 * router of every route's path so that the not-found handler can tell "no such path" from
 * "path exists, wrong method" and list the allowed methods.
 */
export function trackRoutes(app: FastifyInstance): (method: string, url: string) => string[] {
  const router = FindMyWay({ ignoreTrailingSlash: true });
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      if (METHODS.includes(method as HTTPMethod)) {
        try {
          router.on(method as HTTPMethod, route.url, () => {});
        } catch {
          // The same path and method registered twice (HEAD alongside GET): already known.
        }
      }
    }
  });
  return (method, url) => {
    const path = url.split('?')[0] ?? url;
    return METHODS.filter((m) => m !== method && router.find(m, path) !== null);
  };
}
