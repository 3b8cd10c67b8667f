import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/app.js';
import { type Config, loadConfig } from '../../src/config.js';
import { type Core, createCore } from '../../src/core/index.js';
import { connectStore, type Dialect, type Store, storeOptionsOf } from '../../src/store/connect.js';
import { createFreshDatabase } from './postgres.js';

export const ADMIN_PASSWORD = 'Correct-horse-battery-9';

/** A clock the test moves by hand. */
export class ManualClock {
  #now = Date.now();
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
  /** Waits the core asked for (the progressive sign-in delay): recorded, not slept, and time stands still. */
  readonly sleeps: number[] = [];
  #held: (() => void)[] | undefined;
  async sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    const held = this.#held;
    if (held) await new Promise<void>((resolve) => held.push(resolve));
  }
  /** From now on a wait lasts until `releaseSleeps`: a test holds attempts in their delay. */
  holdSleeps(): void {
    this.#held ??= [];
  }
  releaseSleeps(): void {
    const held = this.#held ?? [];
    this.#held = undefined;
    for (const release of held) release();
  }
}

export interface TestContext {
  readonly dialect: Dialect;
  readonly config: Config;
  readonly store: Store;
  readonly core: Core;
  readonly app: FastifyInstance;
  readonly clock: ManualClock;
  inject(options: InjectOptions): Promise<LightMyRequestResponse>;
  /** A new core and app over the same store and data dir: what a restart sees. */
  restart(): Promise<TestContext>;
  close(): Promise<void>;
}

/**
 * A real store (a fresh SQLite file or a fresh PostgreSQL database), migrated and bootstrapped,
 * and the app built over it. Password hashing is made cheap through the settings only.
 */
export async function createTestContext(
  dialect: Dialect,
  settings: Record<string, string> = {},
  options: {
    logger?: Parameters<typeof buildApp>[0]['logger'];
    /** Reach the fresh PostgreSQL database through another URL (a fault-injecting proxy). */
    routeDatabaseUrl?: (url: string) => string;
  } = {},
): Promise<TestContext> {
  const { logger, routeDatabaseUrl = (url: string) => url } = options;
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-test-'));
  const database = dialect === 'postgres' ? await createFreshDatabase() : undefined;
  const config = loadConfig({
    GATEHOUSE_DATA_DIR: dataDir,
    GATEHOUSE_DATABASE_URL: database && routeDatabaseUrl(database.url),
    GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
    GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
    GATEHOUSE_ARGON2_ITERATIONS: '1',
    GATEHOUSE_LOG_LEVEL: 'silent',
    // Tests sign in far more often per minute than a person: the rate-limit tests set their own.
    GATEHOUSE_RATE_LIMIT_SIGNIN: '100000/min',
    GATEHOUSE_RATE_LIMIT_REFRESH: '100000/min',
    GATEHOUSE_RATE_LIMIT_NODE_LOGIN: '100000/min',
    GATEHOUSE_RATE_LIMIT_TOKENS: '100000/min',
    ...settings,
  });
  const clock = new ManualClock();
  const open = async (store: Store): Promise<TestContext> => {
    const core = await createCore({ config, store, clock });
    await core.bootstrap();
    const app = await buildApp({ core, ...(logger ? { logger } : {}) });
    await app.ready();
    return {
      dialect,
      config,
      store,
      core,
      app,
      clock,
      inject: (options) => app.inject(options),
      async restart() {
        await app.close();
        await core.close();
        await store.destroy();
        const reopened = connectStore(storeOptionsOf(config));
        await reopened.migrate();
        return open(reopened);
      },
      async close() {
        await app.close();
        await core.close();
        await store.destroy();
        await database?.drop();
        rmSync(dataDir, { recursive: true, force: true });
      },
    };
  };
  const store = connectStore(storeOptionsOf(config));
  await store.migrate();
  return open(store);
}

/** Another process over the same store as `ctx`: its own connection, core and app (same clock). */
export interface OtherNode {
  readonly store: Store;
  readonly core: Core;
  readonly app: FastifyInstance;
  inject(options: InjectOptions): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

/** `settings`: this process's own, where it is configured unlike `ctx`'s. */
export async function startAnotherNode(ctx: TestContext, settings: Partial<Config> = {}): Promise<OtherNode> {
  const store = connectStore(storeOptionsOf(ctx.config));
  const core = await createCore({ config: { ...ctx.config, ...settings }, store, clock: ctx.clock });
  const app = await buildApp({ core });
  await app.ready();
  return {
    store,
    core,
    app,
    inject: (options) => app.inject(options),
    async close() {
      await app.close();
      await core.close();
      await store.destroy();
    },
  };
}
