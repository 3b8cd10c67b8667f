import { setTimeout as delay } from 'node:timers/promises';

/** Time as core sees it: injected so that tests can move it, never read from Date directly. */
export interface Clock {
  now(): number;
  /**
   * Waits `ms` without blocking the event loop (the progressive sign-in delay). A test clock may
   * record the wait and return at once; without this method the wait is a real timer.
   */
  sleep?(ms: number): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: async (ms) => {
    await delay(ms);
  },
};

export async function sleep(clock: Clock, ms: number): Promise<void> {
  if (ms <= 0) return;
  if (clock.sleep) await clock.sleep(ms);
  else await delay(ms);
}
