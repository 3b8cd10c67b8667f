import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, json, nseSignIn } from '../helpers/http.js';

/**
 * What a password may hold (ASVS 2.1.3, 2.1.4): any Unicode, spaces included, counted in code
 * points, and every character of it counts: nothing is truncated.
 */
forEachDialect('Password input', (dialect) => {
  let ctx: TestContext;
  let root: string;
  let tenancies: Array<{ tenant_id: string; role_name: string }>;

  before(async () => {
    ctx = await createTestContext(dialect);
    root = await nseSignIn(ctx);
    const tenant = await ctx.core.tenants.create({ code: 'pw', name: 'Passwords' });
    tenancies = [{ tenant_id: tenant.id, role_name: 'user' }];
  });
  after(() => ctx.close());

  const create = async (username: string, password: string) => {
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/v2.1/users',
      headers: bearer(root),
      payload: { username, password, tenancies },
    });
    assert.equal(response.statusCode, 201, `${username}: ${response.body}`);
  };
  const signIn = (username: string, password: string) =>
    ctx.inject({ method: 'POST', url: '/api/v2.1/auth/signin', payload: { username, password } });
  const storwareLogin = (login: string, password: string) =>
    ctx.inject({ method: 'POST', url: '/api/session/login', payload: { login, password } });

  test('emoji, kanji, spaces and right-to-left text make passwords that sign in on both surfaces', async () => {
    const passwords: Record<string, string> = {
      emoji: '🦊🐙🌵🎻🚲🧭🪁🍋🛶🦉🧊🎲', // twelve code points: long enough
      kanji: '雪月花鳥風月山川草木春夏秋冬朝昼晩東西南北天地人和',
      spaced: ' quiet  lanterns drift  over the fen ',
      arabic: 'نجمة صغيرة فوق البحر الهادئ',
      mixed: 'Ünïcødé ñ ß 字 ✓ ➜ ø',
    };
    for (const [username, password] of Object.entries(passwords)) {
      await create(`pw-${username}`, password);
      const nse = await signIn(`pw-${username}`, password);
      assert.equal(nse.statusCode, 200, `${username}: ${nse.body}`);
      const storware = await storwareLogin(`pw-${username}`, password);
      assert.equal(storware.statusCode, 201, `${username}: ${storware.body}`);
    }
    // Spaces are part of the password: without them it is another password.
    const trimmed = await signIn('pw-spaced', (passwords.spaced as string).trim());
    assert.equal(trimmed.statusCode, 401, 'the outer spaces count');
  });

  test('nothing is truncated: a password differing only in its 73rd, 129th or 1024th character is refused', async () => {
    const password = `Kq9-${randomBytes(800).toString('base64url').slice(0, 1020)}`;
    assert.equal(password.length, 1024);
    await create('pw-long', password);
    assert.equal((await signIn('pw-long', password)).statusCode, 200, 'the whole password signs in');
    for (const at of [72, 128, 1023]) {
      const changed = `${password.slice(0, at)}${password[at] === 'Z' ? 'Y' : 'Z'}${password.slice(at + 1)}`;
      const response = await signIn('pw-long', changed);
      assert.equal(response.statusCode, 401, `a change at character ${at + 1} is noticed`);
      assert.match(json(response).status.verbose_message, /^INVALID_CREDENTIALS/);
    }
    assert.equal(
      (await signIn('pw-long', password.slice(0, 72))).statusCode,
      401,
      'a prefix is not the password',
    );
  });
});
