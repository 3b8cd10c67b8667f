import type {} from '@fastify/cookie';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type TSchema, Type } from 'typebox';
import type { Core } from '../../core/index.js';
import type { OpenedSession } from '../../core/sessions.js';
import { authOf } from '../auth-context.js';
import { rateLimited } from '../rate-limit.js';
import { authorizationCredentials, requestMeta } from '../request-meta.js';
import {
  SECURE_SESSION_COOKIE,
  SESSION_COOKIE,
  securesCookie,
  sessionCookieValue,
  storwareAuthenticator,
} from './authenticate.js';
import {
  AppUserDetails,
  SessionInfoResponse,
  StorwareError,
  sessionInfoBody,
  userDetailsBody,
} from './bodies.js';

const Secret = Type.String({ maxLength: 4096 });
const errors = { '4xx': StorwareError, '5xx': StorwareError };
const cookieAuth: Record<string, string[]>[] = [{ sessionCookie: [] }, { bearer: [] }];
const NoBody = (description: string) => Type.Unsafe<undefined>({ description });

/** `/api/session/...`: the Storware session API. */
export const sessionRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = storwareAuthenticator(core);
  // The reference shows 201 for these POSTs; the live product answers 200 (a setting).
  const postStatus = core.config.storwareSessionPostStatus;
  // The OpenAPI document names the one status these POSTs answer. Typed as both, because the
  // type provider reads the handlers' return types from literal keys, not a computed one.
  const posted = <T extends TSchema>(schema: T) => ({ [postStatus]: schema }) as { 200: T; 201: T };
  const { cookieSecure } = core.config;
  // Scripts in the page never read it (HttpOnly), other sites' requests never carry it (Strict,
  // and cross-site.ts), and over HTTPS it never travels in clear (Secure) and stays with this host
  // (the __Host- prefix, which needs Path=/).
  const sessionCookie = (request: FastifyRequest) => {
    const secure = securesCookie(request, cookieSecure);
    return {
      name: secure ? SECURE_SESSION_COOKIE : SESSION_COOKIE,
      options: { path: secure ? '/' : '/api', httpOnly: true, sameSite: 'strict', secure } as const,
    };
  };

  const startSession = async (request: FastifyRequest, reply: FastifyReply, opened: OpenedSession) => {
    const cookie = sessionCookie(request);
    reply.setCookie(cookie.name, opened.secret, cookie.options);
    reply.code(postStatus);
    return sessionInfoBody(await core.sessionInfo.describe(opened.auth));
  };

  app.get(
    '/',
    {
      onRequest: authenticate,
      schema: {
        tags: ['Storware session'],
        summary: 'Check the session: 204 when it is valid, 401 when not',
        security: cookieAuth,
        response: { 204: NoBody('The session is valid'), ...errors },
      },
    },
    async (_request, reply) => reply.code(204).send(undefined),
  );

  app.post(
    '/login',
    {
      onRequest: rateLimited(core, 'signin', 'storware'),
      schema: {
        tags: ['Storware session'],
        summary: 'Log in a user; sets the session cookie',
        body: Type.Object({ login: Secret, password: Secret }),
        response: { ...posted(SessionInfoResponse), ...errors },
      },
    },
    async (request, reply) =>
      startSession(
        request,
        reply,
        await core.authentication.signIn(
          request.body.login,
          request.body.password,
          requestMeta(request),
          'storware',
        ),
      ),
  );

  app.post(
    '/login-with-token',
    {
      onRequest: rateLimited(core, 'signin', 'token'),
      schema: {
        tags: ['Storware session'],
        summary: 'Log in with an API token; sets the session cookie',
        body: Type.Object({ token: Secret }),
        response: { ...posted(SessionInfoResponse), ...errors },
      },
    },
    async (request, reply) =>
      startSession(
        request,
        reply,
        await core.authentication.tokenSignIn(request.body.token, requestMeta(request)),
      ),
  );

  app.post(
    '/node/login',
    {
      onRequest: rateLimited(core, 'nodeLogin', 'node'),
      schema: {
        tags: ['Storware session'],
        summary: 'Log in a backup node; refuses versions below the configured minimum',
        body: Type.Object({ login: Secret, password: Secret, version: Type.String({ maxLength: 128 }) }),
        response: { ...posted(SessionInfoResponse), ...errors },
      },
    },
    async (request, reply) =>
      startSession(
        request,
        reply,
        await core.authentication.nodeSignIn(
          request.body.login,
          request.body.password,
          request.body.version,
          requestMeta(request),
        ),
      ),
  );

  app.post(
    '/logout',
    {
      onRequest: authenticate,
      schema: {
        tags: ['Storware session'],
        summary: 'End the session, on both APIs',
        security: cookieAuth,
        response: { ...posted(NoBody('Logged out')), ...errors },
      },
    },
    async (request, reply) => {
      await core.authentication.signOut(authOf(request), requestMeta(request));
      // The cookie goes unless it holds another session still live: a bearer token (or the
      // session's JWT) named the one that ended, and dropping the cookie of a live one would leave
      // it out of the client's hands. One of the ended session, or of none, is cleared.
      const bearer = authorizationCredentials(request, 'bearer');
      const cookieValue = sessionCookieValue(request, cookieSecure);
      const othersLive =
        bearer !== undefined &&
        cookieValue !== undefined &&
        bearer !== cookieValue &&
        (await core.sessions.authenticateSecret(cookieValue).then(
          () => true,
          () => false,
        ));
      if (!othersLive) {
        const cookie = sessionCookie(request);
        reply.clearCookie(cookie.name, cookie.options);
      }
      return reply.code(postStatus).send(undefined);
    },
  );

  app.post(
    '/refresh-endpoints-tokens',
    {
      onRequest: authenticate,
      schema: {
        tags: ['Storware session'],
        summary: 'Session info with freshly issued Endpoints tokens',
        security: cookieAuth,
        response: { ...posted(SessionInfoResponse), ...errors },
      },
    },
    async (request, reply) => {
      reply.code(postStatus);
      return sessionInfoBody(await core.sessionInfo.describe(authOf(request)));
    },
  );

  app.get(
    '/user',
    {
      onRequest: authenticate,
      schema: {
        tags: ['Storware session'],
        summary: 'Session info: requester, settings, privileges, Endpoints tokens, login history',
        security: cookieAuth,
        response: { 200: SessionInfoResponse, ...errors },
      },
    },
    async (request) => sessionInfoBody(await core.sessionInfo.describe(authOf(request))),
  );

  app.get(
    '/user/details',
    {
      onRequest: authenticate,
      schema: {
        tags: ['Storware session'],
        summary: 'Details of the signed-in user',
        security: cookieAuth,
        response: { 200: AppUserDetails, ...errors },
      },
    },
    async (request) => userDetailsBody(await core.sessionInfo.details(authOf(request))),
  );
};
