import type { Store } from '../../src/store/connect.js';
import type { Repositories } from '../../src/store/repositories/index.js';

/**
 * Runs `hold` in a transaction of `store` and keeps it open, with whatever rows it locked, until
 * the answer's `release` is called; `release` resolves when the transaction has ended (committed,
 * or rolled back with `rollBack`). How a test makes another writer wait at a row of its choosing.
 */
export async function heldTransaction(
  store: Store,
  hold: (tx: Repositories) => Promise<unknown>,
  options: { rollBack?: boolean } = {},
): Promise<{ release: () => Promise<void> }> {
  let held!: () => void;
  const holding = new Promise<void>((resolve) => {
    held = resolve;
  });
  let release!: () => void;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const ended = store
    .transaction(async (tx) => {
      await hold(tx);
      held();
      await released;
      if (options.rollBack) throw new RolledBack();
    })
    .catch((error: unknown) => {
      if (!(error instanceof RolledBack)) throw error;
    });
  // A hold that fails ends the transaction before it is held: its error, not a wait for ever.
  await Promise.race([holding, ended]);
  return {
    release: async () => {
      release();
      await ended;
    },
  };
}

class RolledBack extends Error {}
