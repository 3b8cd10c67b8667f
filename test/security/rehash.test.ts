import assert from 'node:assert/strict';
import { randomBytes, scryptSync } from 'node:crypto';
import { after, before, test } from 'node:test';
import { hash as argon2Hash, parseOptions } from '@node-rs/argon2';
import { hash as bcryptHash } from '@node-rs/bcrypt';
import { createTestContext, type TestContext } from '../helpers/context.js';
import { forEachDialect } from '../helpers/dialects.js';
import { bearer, nseSignIn, storwareLogin } from '../helpers/http.js';
import { passwordVerifications } from '../helpers/metrics.js';

const ARGON2ID = 2;
/** The settings of this suite's service: stronger than the test default in iterations. */
const SETTINGS = { memoryKiB: 1024, iterations: 2, parallelism: 1 };

forEachDialect('password hashes are upgraded at sign-in', (dialect) => {
  let ctx: TestContext;

  const storedHash = async (username: string) =>
    (await ctx.store.users.findByUsernameKey(username))?.password_hash ?? undefined;
  /** The stored hash is argon2id with exactly the configured parameters. */
  const isCurrent = (hash: string | null | undefined) => {
    assert.ok(
      typeof hash === 'string' && hash.startsWith('$argon2id$v=19$'),
      `argon2id, got ${hash?.slice(0, 12)}`,
    );
    const options = parseOptions(hash);
    assert.deepEqual(
      { memoryKiB: options.memoryCost, iterations: options.timeCost, parallelism: options.parallelism },
      SETTINGS,
    );
  };
  const signInStatus = async (username: string, password: string) =>
    (await ctx.inject({ method: 'POST', url: '/api/v2.1/auth/signin', payload: { username, password } }))
      .statusCode;

  before(async () => {
    ctx = await createTestContext(dialect, {
      GATEHOUSE_ARGON2_MEMORY_KIB: String(SETTINGS.memoryKiB),
      GATEHOUSE_ARGON2_ITERATIONS: String(SETTINGS.iterations),
      GATEHOUSE_ARGON2_PARALLELISM: String(SETTINGS.parallelism),
    });
    await ctx.core.tenants.create({ code: 'acme', name: 'Acme' });
  });
  after(() => ctx.close());

  test('a hash weaker than the settings is replaced at the next successful sign-in, not at a failed one', async () => {
    const password = 'weaker-hash-owner-42';
    const user = await ctx.core.accounts.createUser({ username: 'weakling', password });
    const weak = await argon2Hash(password, { algorithm: ARGON2ID, memoryCost: 1024, timeCost: 1 });
    await ctx.store.users.update(user.id, { password_hash: weak });

    assert.equal(await signInStatus('weakling', `${password}-wrong`), 401);
    assert.equal(await storedHash('weakling'), weak, 'a failed sign-in changes nothing');

    await nseSignIn(ctx, 'weakling', password);
    const upgraded = await storedHash('weakling');
    assert.notEqual(upgraded, weak);
    isCurrent(upgraded);

    // The new hash works, and is not replaced again.
    await nseSignIn(ctx, 'weakling', password);
    assert.equal(await storedHash('weakling'), upgraded);
  });

  test('imported bcrypt, scrypt and argon2i hashes become argon2id with the current settings after one sign-in', async () => {
    const salt = randomBytes(16);
    const imported: [string, string, string][] = [];
    const bcryptPassword = 'imported-from-bcrypt-1';
    imported.push(['was-bcrypt', bcryptPassword, await bcryptHash(bcryptPassword, 4)]);
    const scryptPassword = 'imported-from-scrypt-1';
    const key = scryptSync(scryptPassword, salt, 32, { N: 1024, r: 8, p: 1 });
    const b64 = (bytes: Buffer) => bytes.toString('base64').replace(/=+$/, '');
    imported.push(['was-scrypt', scryptPassword, `$scrypt$ln=10,r=8,p=1$${b64(salt)}$${b64(key)}`]);
    const argon2iPassword = 'imported-from-argon2i-1';
    imported.push([
      'was-argon2i',
      argon2iPassword,
      await argon2Hash(argon2iPassword, { algorithm: 1, memoryCost: 4096, timeCost: 3 }),
    ]);

    for (const [username, password, passwordHash] of imported) {
      await ctx.core.accounts.createUser({ username, passwordHash, tenantCode: 'acme', role: 'user' });
      assert.equal(await storedHash(username), passwordHash);
      await storwareLogin(ctx, username, password);
      isCurrent(await storedHash(username));
      await nseSignIn(ctx, username, password);
    }
  });

  test('a failed sign-in against a hash cheaper than the settings also does the dummy verification, as an unknown name does', async () => {
    const verifications = () => passwordVerifications(ctx);
    const password = 'imported-cheaply-77';
    const user = await ctx.core.accounts.createUser({ username: 'cheap-import', password });
    await ctx.store.users.update(user.id, { password_hash: await bcryptHash(password, 4) });
    const count = async (username: string) => {
      const before = await verifications();
      assert.equal(await signInStatus(username, 'surely-not-it-1234'), 401);
      return (await verifications()) - before;
    };
    assert.equal(await count('cheap-import'), 2, 'its own bcrypt and the dummy argon2id');
    assert.equal(await count('no-such-user-here'), 1, 'the dummy argon2id');
    const current = await ctx.core.accounts.createUser({ username: 'current-hash', password });
    assert.ok(current);
    assert.equal(await count('current-hash'), 1, 'a current hash costs what the dummy does');
  });

  test('a hash stronger than the settings is kept', async () => {
    const password = 'stronger-hash-owner-7';
    const user = await ctx.core.accounts.createUser({ username: 'stronghold', password });
    const strong = await argon2Hash(password, { algorithm: ARGON2ID, memoryCost: 2048, timeCost: 3 });
    await ctx.store.users.update(user.id, { password_hash: strong });
    await nseSignIn(ctx, 'stronghold', password);
    assert.equal(await storedHash('stronghold'), strong);
  });

  test("a backup node's weaker hash is replaced at its next login", async () => {
    const password = 'backup-secret-phrase-5';
    const node = await ctx.core.accounts.createNode({ login: 'agent-7', password });
    const weak = await argon2Hash(password, { algorithm: ARGON2ID, memoryCost: 1024, timeCost: 1 });
    await ctx.store.nodes.update(node.id, { password_hash: weak });
    const response = await ctx.inject({
      method: 'POST',
      url: '/api/session/node/login',
      payload: { login: 'agent-7', password, version: '6.1.0' },
    });
    assert.equal(response.statusCode, 201, response.body);
    const stored = (await ctx.store.nodes.findById(node.id))?.password_hash;
    assert.notEqual(stored, weak);
    isCurrent(stored);
  });

  test('the upgrade never overwrites a password set in the meantime', async () => {
    const password = 'raced-password-owner-3';
    const user = await ctx.core.accounts.createUser({ username: 'racer', password });
    const weak = await argon2Hash(password, { algorithm: ARGON2ID, memoryCost: 1024, timeCost: 1 });
    await ctx.store.users.update(user.id, { password_hash: weak });
    // What a sign-in that read `weak` does after an administrator set a new password meanwhile.
    const replacement = await argon2Hash('administrator-chose-this-9', {
      algorithm: ARGON2ID,
      memoryCost: 1024,
      timeCost: 2,
    });
    await ctx.store.users.update(user.id, { password_hash: replacement });
    assert.equal(await ctx.store.users.replacePasswordHash(user.id, weak, 'should-not-land'), false);
    assert.equal(await storedHash('racer'), replacement);
    assert.equal(await ctx.store.users.replacePasswordHash(user.id, replacement, replacement), true);
    const token = await nseSignIn(ctx, 'racer', 'administrator-chose-this-9');
    const me = await ctx.inject({ method: 'GET', url: '/api/v2.1/users/racer', headers: bearer(token) });
    assert.equal(me.statusCode, 200);
  });
});
