import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { Core } from '../../core/index.js';
import type { AuthContext } from '../../core/sessions.js';
import { GatehouseError } from '../../errors.js';
import type { SessionWithPrincipal } from '../../store/repositories/sessions.js';
import { authOf } from '../auth-context.js';
import { rateLimited } from '../rate-limit.js';
import { requestMeta } from '../request-meta.js';
import { nseAuthenticator } from './authenticate.js';
import { NSE_ERRORS, RecordEnvelope, single } from './envelope.js';
import { AuthRecord, userRecord } from './records.js';

const Credentials = Type.String({ maxLength: 4096 });

/** `/auth/signin`, `/auth/refresh`, `/auth/password`: sessions and their bearer tokens. */
export const authRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  // A session's token only: HTTP Basic opens no session to refresh.
  const authenticateSession = nseAuthenticator(core, { basic: false });
  const answer = async (auth: AuthContext & { session: SessionWithPrincipal }) => ({
    user: userRecord(await core.accounts.viewUser(auth.principal.id)),
    token: await core.sessions.issueToken(auth),
  });

  app.post(
    '/auth/signin',
    {
      onRequest: rateLimited(core, 'signin', 'nse'),
      schema: {
        tags: ['NSE auth'],
        summary: 'Sign in with a username and password; returns the user and a bearer token',
        body: Type.Object({ username: Credentials, password: Credentials }),
        response: { 200: RecordEnvelope(AuthRecord), ...NSE_ERRORS },
      },
    },
    async (request) => {
      const opened = await core.authentication.signIn(
        request.body.username,
        request.body.password,
        requestMeta(request),
        'nse',
      );
      // "succeeeded" (sic) is the reference's text; clients may match on it.
      return single(await answer(opened.auth), 'Authentication succeeeded.');
    },
  );

  app.post(
    '/auth/refresh',
    {
      onRequest: [rateLimited(core, 'refresh'), authenticateSession],
      schema: {
        tags: ['NSE auth'],
        summary:
          'A new bearer token for the same session; the one presented keeps working for GATEHOUSE_REFRESH_GRACE, and using it later ends the session',
        security: [{ bearer: [] as string[] }],
        response: { 200: RecordEnvelope(AuthRecord), ...NSE_ERRORS },
      },
    },
    async (request) => {
      const auth = authOf(request);
      if (!auth.session || auth.principal.kind !== 'user') {
        // HTTP Basic has no session to refresh; a node has no NSE user record.
        throw new GatehouseError('AUTHENTICATION_REQUIRED', 'refresh needs a bearer token of a user session');
      }
      const token = await core.sessions.refreshToken(
        { ...auth, session: auth.session },
        requestMeta(request),
      );
      return single({ user: userRecord(await core.accounts.viewUser(auth.principal.id)), token });
    },
  );

  app.post(
    '/auth/password',
    {
      onRequest: rateLimited(core, 'signin', 'password'),
      schema: {
        tags: ['NSE auth'],
        summary:
          "Change the user's password; ends every session of the user and returns the token of a new one",
        body: Type.Object({
          username: Credentials,
          old_password: Credentials,
          new_password: Credentials,
        }),
        response: { 200: RecordEnvelope(AuthRecord), ...NSE_ERRORS },
      },
    },
    async (request) => {
      const opened = await core.authentication.changePassword(
        {
          username: request.body.username,
          oldPassword: request.body.old_password,
          newPassword: request.body.new_password,
        },
        requestMeta(request),
      );
      return single(await answer(opened.auth));
    },
  );
};
