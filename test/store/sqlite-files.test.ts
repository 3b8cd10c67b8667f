import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { connectStore } from '../../src/store/connect.js';

// SQLite only: PostgreSQL keeps its files in its own data directory.

test('a new SQLite database and its -wal and -shm files are readable by their owner only, whatever the umask and the directory', async () => {
  // A data directory made beforehand by an operator (a volume, `mkdir -p`): 0755.
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-mode-'));
  chmodSync(dataDir, 0o755);
  const previous = process.umask(0o022);
  const store = connectStore({ databaseUrl: undefined, dataDir });
  try {
    await store.migrate();
    for (const file of ['gatehouse.db', 'gatehouse.db-wal', 'gatehouse.db-shm']) {
      const mode = statSync(path.join(dataDir, file)).mode & 0o777;
      assert.equal(mode, 0o600, `${file}: ${mode.toString(8)}`);
    }
  } finally {
    process.umask(previous);
    await store.destroy();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
