import type { FastifyInstance, FastifyRequest } from 'fastify';
import { GatehouseError } from '../errors.js';
import { authorizationCredentials } from './request-meta.js';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** "example.com:443" and "example.com" name the same host: the default ports are dropped. */
const normalHost = (host: string): string => host.toLowerCase().replace(/:(80|443)$/, '');

/**
 * Why this request is a cross-site request Gatehouse refuses, or undefined when it may go on.
 *
 * A browser attaches the session cookie (and cached HTTP Basic credentials) to requests that a
 * page of any site makes, so a state-changing request carrying them could be forged (CSRF). The
 * SameSite=Strict cookie already stops most of it; this check also covers sibling subdomains
 * (same-site but not same-origin), logins (a forged login plants the attacker's session), Basic,
 * and browsers that ignore SameSite. It is the Fetch-Metadata check of Go's
 * net/http.CrossOriginProtection:
 *
 * - `Authorization: Bearer` is never ambient: a page can send it cross-origin only after a CORS
 *   preflight, which Gatehouse never grants. Such requests pass.
 * - an `Origin` in GATEHOUSE_ALLOWED_ORIGINS passes;
 * - `Sec-Fetch-Site` (set by every current browser, unforgeable by page scripts): `same-origin`
 *   or `none` (typed by the user) passes, anything else is refused;
 * - without it (older browsers), an `Origin` whose host differs from the request's `Host` is
 *   refused. The scheme is not compared: behind a proxy that ends TLS it is not known reliably.
 * - a request with neither header is not from a browser page (scripts, curl, agents): it passes.
 */
export function crossSiteRefusal(
  request: FastifyRequest,
  allowedOrigins: ReadonlySet<string>,
): string | undefined {
  if (SAFE_METHODS.has(request.method)) return undefined;
  if (authorizationCredentials(request, 'bearer') !== undefined) return undefined;
  const origin = headerValue(request, 'origin');
  if (origin !== undefined && allowedOrigins.has(origin.toLowerCase())) return undefined;
  const site = headerValue(request, 'sec-fetch-site');
  if (site !== undefined) {
    if (site === 'same-origin' || site === 'none') return undefined;
    return `Sec-Fetch-Site is ${site.slice(0, 40)}`;
  }
  if (origin === undefined) return undefined;
  let originHost: string | undefined;
  try {
    originHost = origin === 'null' ? undefined : new URL(origin).host;
  } catch {
    originHost = undefined;
  }
  if (originHost !== undefined && normalHost(originHost) === normalHost(request.host)) return undefined;
  return `Origin ${origin.slice(0, 200)} is neither this service nor in GATEHOUSE_ALLOWED_ORIGINS`;
}

function headerValue(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' && value !== '' ? value.trim().toLowerCase() : undefined;
}

/**
 * Refuses forged cross-site requests before anything else runs: no authentication (a Basic
 * attempt would count as a failed sign-in), no parsing, no write.
 */
export function addCrossSiteProtection(app: FastifyInstance, allowedOrigins: readonly string[]): void {
  const allowed = new Set(allowedOrigins.map((origin) => origin.toLowerCase()));
  // Callback hooks here and in the other per-request checks: no promise per request.
  app.addHook('onRequest', (request, _reply, done) => {
    const refusal = crossSiteRefusal(request, allowed);
    if (refusal === undefined) return done();
    request.log.info({ origin: request.headers.origin }, 'cross-site request refused');
    done(new GatehouseError('CROSS_SITE_REQUEST', refusal));
  });
}
