/** Time as core sees it: injected so that tests can move it, never read from Date directly. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
