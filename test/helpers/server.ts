import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import { type RunningServer, startServer } from '../../src/server.js';
import type { Dialect } from '../../src/store/connect.js';
import { ADMIN_PASSWORD } from './context.js';
import { createFreshDatabase } from './postgres.js';

/** A data directory and, on PostgreSQL, a fresh database; `dispose` removes both. */
export interface FreshStore {
  readonly settings: Record<string, string>;
  dispose(): Promise<void>;
}

export async function freshStore(dialect: Dialect): Promise<FreshStore> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-server-'));
  const database = dialect === 'postgres' ? await createFreshDatabase() : undefined;
  return {
    settings: { GATEHOUSE_DATA_DIR: dataDir, ...(database ? { GATEHOUSE_DATABASE_URL: database.url } : {}) },
    async dispose() {
      await database?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * `startServer` (the real listening server, in this process) on `store`, on a free port, with the
 * test admin's password, cheap hashing, no log, and `settings` on top.
 */
export function startTestServer(
  store: FreshStore,
  settings: Record<string, string> = {},
): Promise<RunningServer> {
  return startServer(
    loadConfig({
      ...store.settings,
      GATEHOUSE_PORT: '0',
      GATEHOUSE_ADMIN_PASSWORD: ADMIN_PASSWORD,
      GATEHOUSE_ARGON2_MEMORY_KIB: '1024',
      GATEHOUSE_ARGON2_ITERATIONS: '1',
      GATEHOUSE_LOG_LEVEL: 'silent',
      ...settings,
    }),
  );
}
