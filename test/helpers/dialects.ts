import { describe } from 'node:test';
import type { Dialect } from '../../src/store/connect.js';
import { POSTGRES_REQUIRED, postgresUnavailableReason } from './postgres.js';

const unavailable = await postgresUnavailableReason();
if (unavailable && POSTGRES_REQUIRED) {
  throw new Error(
    `PostgreSQL is required (GATEHOUSE_TEST_REQUIRE_POSTGRES=1) but unreachable: ${unavailable}`,
  );
}

/**
 * Runs a suite once per store: every API test runs on SQLite and on PostgreSQL. Without a
 * reachable PostgreSQL the second half is skipped, and says so.
 */
export function forEachDialect(title: string, suite: (dialect: Dialect) => void): void {
  describe(`${title} [sqlite]`, () => suite('sqlite'));
  if (unavailable) {
    describe(`${title} [postgres]`, { skip: `PostgreSQL skipped: ${unavailable}` }, () => {});
  } else {
    describe(`${title} [postgres]`, () => suite('postgres'));
  }
}
