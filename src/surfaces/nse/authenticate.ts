import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import type { Core } from '../../core/index.js';
import { GatehouseError } from '../../errors.js';
import { authenticationHook } from '../auth-context.js';
import { authorizationCredentials, requestMeta } from '../request-meta.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set on routes that take HTTP Basic: their 401 challenges Basic too (`renderNseError`). */
    basicAccepted: boolean;
  }
}

/**
 * NSE accepts `Authorization: Bearer <jwt>` and HTTP Basic (the reference says both).
 * Basic runs the password check, lockout included, on every request (argon2 itself is skipped for
 * a pair verified lately: core/credential-cache.ts); it opens no session.
 */
export function nseAuthenticator(core: Core, options: { readonly basic: boolean } = { basic: true }) {
  const hook = authenticationHook(
    (request) => {
      const bearer = authorizationCredentials(request, 'bearer');
      return bearer === undefined ? undefined : core.sessions.admitCachedBearer(bearer);
    },
    async (request) => {
      const bearer = authorizationCredentials(request, 'bearer');
      if (bearer !== undefined) {
        request.auth = await core.sessions.authenticateBearer(bearer, requestMeta(request));
        return;
      }
      const basic = options.basic ? authorizationCredentials(request, 'basic') : undefined;
      if (basic !== undefined) {
        const decoded = decodeBasic(basic);
        const colon = decoded?.indexOf(':') ?? -1;
        // A NUL is never in a name or password, and PostgreSQL cannot even look it up.
        if (decoded === undefined || colon < 0 || decoded.includes('\0'))
          throw new GatehouseError('AUTHENTICATION_REQUIRED', 'the Basic credentials are malformed');
        const user = await core.authentication.verifyUserPassword(
          decoded.slice(0, colon),
          decoded.slice(colon + 1),
          requestMeta(request),
        );
        request.auth = { principal: { kind: 'user', id: user.id, name: user.username }, session: undefined };
        return;
      }
      throw new GatehouseError(
        'AUTHENTICATION_REQUIRED',
        options.basic
          ? 'send Authorization: Bearer <token> or HTTP Basic credentials'
          : 'send Authorization: Bearer <token>',
      );
    },
  );
  if (!options.basic) return hook;
  return (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    request.basicAccepted = true;
    hook(request, reply, done);
  };
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The user-pass of HTTP Basic, or undefined if it is not base64 or not UTF-8: decoded leniently,
 * characters outside the alphabet were skipped and invalid bytes became U+FFFD, so that byte
 * strings that differ matched one password.
 */
function decodeBasic(value: string): string | undefined {
  if (!BASE64.test(value)) return undefined;
  try {
    return UTF8.decode(Buffer.from(value, 'base64'));
  } catch {
    return undefined;
  }
}
