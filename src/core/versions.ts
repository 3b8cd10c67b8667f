import { isVersion } from '../config.js';

/**
 * Compares dotted numeric versions ("5.1", "5.1.0.42"); missing parts count as 0.
 * Returns undefined when either side is not such a version. A build suffix after "-" is ignored.
 */
export function compareVersions(a: string, b: string): number | undefined {
  const clean = (v: string) => v.trim().split('-')[0] ?? '';
  const left = clean(a);
  const right = clean(b);
  if (!isVersion(left) || !isVersion(right)) return undefined;
  const l = left.split('.').map(Number);
  const r = right.split('.').map(Number);
  for (let i = 0; i < Math.max(l.length, r.length); i++) {
    const diff = (l[i] ?? 0) - (r[i] ?? 0);
    if (diff !== 0) return Math.sign(diff);
  }
  return 0;
}
