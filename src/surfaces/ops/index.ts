import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Core } from '../../core/index.js';
import { METRICS_CONTENT_TYPE } from '../../core/metrics.js';
import { GatehouseError } from '../../errors.js';
import { NSE_ERRORS } from '../nse/envelope.js';
import { renderNseError } from '../nse/index.js';
import { authorizationCredentials } from '../request-meta.js';

const Health = Type.Object({ status: Type.String() });
const Jwk = Type.Object(
  {
    kty: Type.String(),
    crv: Type.String(),
    x: Type.String(),
    y: Type.String(),
    kid: Type.String(),
    alg: Type.String(),
    use: Type.String(),
  },
  { additionalProperties: false },
);

const plainText = (description: string) => ({
  description,
  content: { 'text/plain': { schema: Type.String() } },
});

/**
 * Every route here may also refuse a request in the NSE envelope before its handler runs (a query
 * holding a NUL, too many requests, a malformed URL): documented on each, as clients and the fuzz
 * oracle read the OpenAPI document.
 */
const ERROR_RESPONSES = {
  '4xx': {
    description: 'Error in the NSE envelope',
    content: { 'application/json': { schema: NSE_ERRORS['4xx'] } },
  },
  '5xx': {
    description: 'Error in the NSE envelope',
    content: { 'application/json': { schema: NSE_ERRORS['5xx'] } },
  },
};

const digest = (text: string) => createHash('sha256').update(text).digest();

/** True when the request carries `Authorization: Bearer <token>`; compared in constant time. */
function hasBearer(request: FastifyRequest, token: string): boolean {
  const sent = authorizationCredentials(request, 'bearer');
  return sent !== undefined && timingSafeEqual(digest(sent), digest(token));
}

export interface OpsOptions {
  readonly core: Core;
  /**
   * The text of `/metrics`; by default this process's. A cluster worker asks its primary, which
   * collects every worker's (a series per worker), so that a scrape landing on any worker
   * describes the whole node.
   */
  readonly metricsText?: () => Promise<string>;
  /** True once the process is shutting down (AppDeps.shuttingDown). */
  readonly shuttingDown?: () => boolean;
}

/** Health, readiness, metrics and the public keys of the Endpoints tokens. */
export const opsSurface: FastifyPluginAsyncTypebox<OpsOptions> = async (
  app,
  { core, metricsText, shuttingDown = () => false },
) => {
  // Registered before the app's own handler is set: refusals here get the NSE envelope too.
  app.setErrorHandler(renderNseError);
  const { metrics: metricsSettings } = core.config;
  // Balancers probe and Prometheus scrapes every few seconds: at `info`, two lines each filled the
  // log (found by review). Their answers are logged from `warn` on (a failed readiness check is).
  const probeLogLevel = ['fatal', 'error', 'silent'].includes(core.config.logLevel)
    ? core.config.logLevel
    : 'warn';
  if (metricsSettings.enabled) {
    const { token } = metricsSettings;
    const scrape = metricsText ?? (() => core.metrics.text());
    app.get(
      '/metrics',
      {
        logLevel: probeLogLevel,
        schema: {
          tags: ['Operations'],
          summary: `Prometheus metrics (text format 0.0.4) of this node${token ? '; needs the GATEHOUSE_METRICS_TOKEN bearer secret' : ''}`,
          ...(token ? { security: [{ bearer: [] as string[] }] } : {}),
          response: {
            200: plainText('Prometheus text exposition format'),
            503: plainText('serve --workers: the primary process did not answer in time'),
            ...ERROR_RESPONSES,
          },
        },
      },
      async (request, reply) => {
        if (token !== undefined && !hasBearer(request, token)) {
          throw new GatehouseError(
            'AUTHENTICATION_REQUIRED',
            'send Authorization: Bearer <GATEHOUSE_METRICS_TOKEN>',
          );
        }
        let text: string;
        try {
          text = await scrape();
        } catch (error) {
          request.log.warn({ err: error }, 'metrics: collecting from the worker processes failed');
          return reply.code(503).header('Retry-After', '1').type('text/plain').send('metrics unavailable\n');
        }
        return reply.type(METRICS_CONTENT_TYPE).send(text);
      },
    );
  }

  app.get(
    '/healthz',
    {
      logLevel: probeLogLevel,
      schema: {
        tags: ['Operations'],
        summary: 'Liveness: the process serves requests',
        response: { 200: Health, ...ERROR_RESPONSES },
      },
    },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      logLevel: probeLogLevel,
      schema: {
        tags: ['Operations'],
        summary: 'Readiness: the store answers and the process is not shutting down',
        response: { 200: Health, 503: Health, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      // During GATEHOUSE_SHUTDOWN_DELAY: still serving, but balancers should send no more.
      if (shuttingDown()) return reply.code(503).send({ status: 'shutting down' });
      try {
        await core.store.ping();
        return { status: 'ready' };
      } catch (error) {
        request.log.warn({ err: error }, 'readiness check: store unavailable');
        return reply.code(503).header('Retry-After', '1').send({ status: 'store unavailable' });
      }
    },
  );

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['Operations'],
        summary: 'Public keys that verify the Endpoints tokens (ES256)',
        response: { 200: Type.Object({ keys: Type.Array(Jwk) }), ...ERROR_RESPONSES },
      },
    },
    async (_request, reply) => {
      reply.header('Cache-Control', 'public, max-age=300');
      // A key rotated in on another node (or by `gatehouse keys rotate`) is published within a minute.
      await core.keyring.refreshIfDue();
      return { keys: core.keyring.publicJwks() as Array<Record<string, string>> } as never;
    },
  );
};
