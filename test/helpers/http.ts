import type { LightMyRequestResponse } from 'fastify';
import type { TestContext } from './context.js';
import { ADMIN_PASSWORD } from './context.js';

export const json = (response: LightMyRequestResponse) => response.json() as Record<string, any>;

export async function nseSignIn(
  ctx: TestContext,
  username = 'admin',
  password = ADMIN_PASSWORD,
): Promise<string> {
  const response = await ctx.inject({
    method: 'POST',
    url: '/api/v2.1/auth/signin',
    payload: { username, password },
  });
  if (response.statusCode !== 200) throw new Error(`sign-in failed: ${response.statusCode} ${response.body}`);
  return json(response).result.records[0].token as string;
}

/** Refreshes an NSE bearer token on `node` (any app over the store) and returns the next one. */
export async function nseRefresh(node: Pick<TestContext, 'inject'>, token: string): Promise<string> {
  const response = await node.inject({
    method: 'POST',
    url: '/api/v2.1/auth/refresh',
    headers: { authorization: `Bearer ${token}` },
  });
  if (response.statusCode !== 200) throw new Error(`refresh failed: ${response.statusCode} ${response.body}`);
  return json(response).result.records[0].token as string;
}

/** Logs in on the Storware surface and returns the session cookie value. */
export async function storwareLogin(
  ctx: TestContext,
  login = 'admin',
  password = ADMIN_PASSWORD,
): Promise<string> {
  const response = await ctx.inject({
    method: 'POST',
    url: '/api/session/login',
    payload: { login, password },
  });
  const cookie = response.cookies.find((c) => c.name === 'gatehouse_session');
  if (response.statusCode !== 201 || !cookie)
    throw new Error(`login failed: ${response.statusCode} ${response.body}`);
  return cookie.value;
}

/** The session id a Gatehouse JWT carries (its `sid` claim). */
export const sidOf = (jwt: string): string =>
  JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')).sid as string;

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
export const basic = (username: string, password: string) => ({
  authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`,
});
