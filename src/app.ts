import { randomUUID } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Config } from './config.js';
import type { Core } from './core/index.js';
import { answerClientError } from './surfaces/client-errors.js';
import { addCrossSiteProtection } from './surfaces/cross-site.js';
import { frameworkErrors } from './surfaces/framework-errors.js';
import { NSE_PREFIX, nseSurface, renderNseError } from './surfaces/nse/index.js';
import { opsSurface } from './surfaces/ops/index.js';
import { notFoundOrNotAllowed, type RouteTable, trackRoutes } from './surfaces/route-table.js';
import { addSecurityHeaders } from './surfaces/security-headers.js';
import { STORWARE_PREFIX, storwareSurface } from './surfaces/storware/index.js';
import { refuseUnstorableText } from './surfaces/text-input.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Every registered route, for introspection (OpenAPI coverage). */
    readonly routeTable: RouteTable;
  }
}

export interface AppDeps {
  readonly core: Core;
  /** Where and from which level to log (tests pass a stream to read what is logged); always redacted. */
  readonly logger?: { readonly level?: string; readonly stream?: { write(line: string): void } };
  /** The text of `/metrics` when not this process's own (a cluster worker's: the whole node's). */
  readonly metricsText?: () => Promise<string>;
  /** True once the process is shutting down: `/readyz` answers 503 so that balancers stop sending. */
  readonly shuttingDown?: () => boolean;
}

/** Paths and headers that may carry secrets: never logged. */
export const REDACTED_LOG_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  // A request Node's parser refuses (a bad method, a header too large) is logged at trace by
  // Fastify with its bytes as received: credentials, cookies and a body's password among them.
  'err.rawPacket',
];

/**
 * A request as its log lines show it: Fastify's own fields, the URL without its query string. No
 * route takes a secret there, but clients put them there anyway (`?password=…`, `?token=…`), and
 * the access log kept them (found by review); the filters a list was asked for are not worth it.
 */
function loggedRequest(request: FastifyRequest) {
  const query = request.url.indexOf('?');
  return {
    method: request.method,
    url: query === -1 ? request.url : `${request.url.slice(0, query)}?…`,
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort,
  };
}

/** What a caller's or a proxy's `X-Request-Id` may be to be logged: a UUID, a trace id, a counter. */
const SENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;

/**
 * A request's id, in its log lines (`reqId`) and in its answer's `X-Request-Id`: a new UUID, unique
 * and made here. Fastify's default, a counter per process, started again at every restart and was
 * the same in every worker (found by review: an operator could not find the line of a 500, and the
 * caller had nothing to quote). An id the caller or a proxy sent is not taken as the request's own
 * (anyone may send one: another request's, to mix its lines into an operator's search; found by
 * review), but logged beside it as `sentRequestId` when it looks like one, so that a request can
 * be followed from a proxy's logs.
 */
const requestIdOf = (): string => randomUUID();

/**
 * Builds the HTTP application without listening: `main` listens, tests inject requests.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { core } = deps;
  const { config } = core;
  const app = Fastify({
    logger: {
      level: config.logLevel,
      ...deps.logger,
      redact: REDACTED_LOG_PATHS,
      serializers: { req: loggedRequest },
    },
    bodyLimit: config.bodyLimitBytes,
    trustProxy: trustedProxies(config.trustProxy),
    // Fastify sets no limit on receiving a request, so a client that trickles a body a byte at
    // a time held its connection for ever: here a request must have arrived within the timeout
    // (Node answers 408 and closes), checked every second.
    requestTimeout: config.requestTimeoutMs,
    ...(config.tls
      ? { https: { cert: config.tls.cert, key: config.tls.key, ...incompleteRequestChecks(config) } }
      : { http: incompleteRequestChecks(config) }),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 256 },
    return503OnClosing: true,
    genReqId: requestIdOf,
    childLoggerFactory: (logger, bindings, options, request) => {
      const sent = request.headers['x-request-id'];
      return logger.child(
        typeof sent === 'string' && SENT_REQUEST_ID.test(sent)
          ? { ...bindings, sentRequestId: sent }
          : bindings,
        options,
      );
    },
    frameworkErrors,
    clientErrorHandler: answerClientError,
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are validated without type coercion (a number is not a username); query strings and
  // path parameters arrive as text and are coerced to the declared types.
  const ajvOptions = { useDefaults: true, removeAdditional: true, allErrors: false, strict: false } as const;
  const bodyAjv = new Ajv({ ...ajvOptions, coerceTypes: false });
  const textAjv = new Ajv({ ...ajvOptions, coerceTypes: 'array' });
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? bodyAjv : textAjv).compile(schema),
  );

  // Session POSTs (logout, refresh) are often sent with a JSON content type and no body.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, undefined);
    parseJson(request, body as string, done);
  });

  const routes = trackRoutes(app);
  const allowedMethods = routes.allowedMethods;
  app.decorate('routeTable', routes);
  addSecurityHeaders(app, deps.shuttingDown ?? (() => false), config.connectionMaxAgeMs);
  addCrossSiteProtection(app, config.allowedOrigins);
  refuseUnstorableText(app);
  app.decorateRequest('auth', null);
  app.decorateRequest('basicAccepted', false);
  if (config.metrics.enabled) {
    const { metrics } = core;
    // Timed from the request's arrival to its answer; labelled by route pattern, never the raw
    // URL (ids and names would make a series per object); anything unrouted is `not_found`, or
    // `method_not_allowed` for a path that exists with other methods.
    app.addHook('onResponse', (request, reply, done) => {
      metrics.observeRequest(
        request.method,
        request.routeOptions.url ?? (reply.statusCode === 405 ? 'method_not_allowed' : 'not_found'),
        reply.statusCode,
        reply.elapsedTime / 1000,
      );
      done();
    });
  }
  // No parsing hook: most requests carry no session cookie, and the one reader parses its own
  // (`sessionCookieValue`); setting and clearing cookies works the same.
  await app.register(fastifyCookie, { hook: false });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Gatehouse',
        description:
          'Identity, sessions and tenant administration: NetApp Service Engine v2.1 and Storware session APIs',
        version: '0.1.0',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          basic: { type: 'http', scheme: 'basic' },
          sessionCookie: { type: 'apiKey', in: 'cookie', name: 'gatehouse_session' },
        },
      },
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(opsSurface, {
    core,
    ...(deps.metricsText ? { metricsText: deps.metricsText } : {}),
    ...(deps.shuttingDown ? { shuttingDown: deps.shuttingDown } : {}),
  });
  await app.register(nseSurface, { prefix: NSE_PREFIX, core, allowedMethods });
  await app.register(storwareSurface, { prefix: STORWARE_PREFIX, core, allowedMethods });

  // Anything outside the two surfaces gets the NSE envelope.
  app.setNotFoundHandler(async (request) => {
    throw notFoundOrNotAllowed(request.method, request.url, allowedMethods);
  });
  app.setErrorHandler(renderNseError);

  return app;
}

/** Node's checks of requests still arriving: every second, headers within the timeout or 60 s. */
const incompleteRequestChecks = (config: Config) => ({
  connectionsCheckingInterval: 1000,
  headersTimeout: Math.min(60_000, config.requestTimeoutMs),
});

/** Fastify's form of GATEHOUSE_TRUST_PROXY: a hop count as the function Fastify makes of one. */
function trustedProxies(
  setting: Config['trustProxy'],
): false | string | ((address: string, hop: number) => boolean) {
  if (setting === false) return false;
  if (typeof setting === 'number') return (_address, hop) => hop < setting;
  return setting.join(',');
}
