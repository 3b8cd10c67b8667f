import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
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

/**
 * Makes `dir` unwritable for this process: its mode for a user, the immutable attribute for root
 * (whom modes do not stop). undefined where neither can be done (root without chattr).
 */
function readOnly(dir: string): (() => void) | undefined {
  if (process.getuid?.() !== 0) {
    chmodSync(dir, 0o555);
    return () => chmodSync(dir, 0o755);
  }
  try {
    execFileSync('chattr', ['+i', dir], { stdio: 'ignore' });
    return () => execFileSync('chattr', ['-i', dir], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
}

test('a store in a directory it cannot write is refused naming the file and the setting, not in SQLite words alone', async (t) => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'gatehouse-readonly-'));
  const made = connectStore({ databaseUrl: undefined, dataDir });
  await made.migrate();
  await made.destroy();
  rmSync(path.join(dataDir, 'gatehouse.db-wal'), { force: true });
  rmSync(path.join(dataDir, 'gatehouse.db-shm'), { force: true });
  const writable = readOnly(dataDir);
  if (!writable) {
    t.skip('root without chattr: no way to make a directory read-only here');
    rmSync(dataDir, { recursive: true, force: true });
    return;
  }
  try {
    // Before: "unable to open database file", and nothing said which file.
    assert.throws(
      () => connectStore({ databaseUrl: undefined, dataDir }),
      (error: Error & { code?: string }) => {
        assert.match(
          error.message,
          new RegExp(`cannot open the SQLite store ${path.join(dataDir, 'gatehouse.db')}`),
        );
        assert.match(error.message, /GATEHOUSE_DATA_DIR/);
        // Root's immutable directory: CANTOPEN; a user's read-only one: READONLY_DIRECTORY.
        assert.match(error.code ?? '', /^SQLITE_(CANTOPEN|READONLY)/);
        return true;
      },
    );
  } finally {
    writable();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
