import type { TestContext } from './context.js';

/** Password verifications (real and dummy) the process has run, from its own metrics. */
export async function passwordVerifications(ctx: Pick<TestContext, 'core'>): Promise<number> {
  const text = await ctx.core.metrics.text();
  return Number(
    /^gatehouse_password_hash_duration_seconds_count\{operation="verify"\} (\d+)$/m.exec(text)?.[1] ?? 0,
  );
}
