import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The password policy, after NIST SP 800-63B §5.1.1.2: a minimum and a maximum length, no
 * composition rules, and a refusal of passwords that are known or guessable (a list of common and
 * breached passwords shipped with Gatehouse, repeats and sequences, the service's name, and the
 * username and close variants of it). Every path that sets a password checks it here.
 */
export interface PasswordPolicy {
  readonly minLength: number;
}

/**
 * NIST SP 800-63B asks verifiers to accept at least 64 characters (Gatehouse promises 128);
 * hashing a megabyte is a DoS.
 */
export const PASSWORD_MAX_LENGTH = 1024;
/** The longest a password may grow by NFKC (compatibility characters written as several). */
const FOLDED_MAX_LENGTH = 2 * PASSWORD_MAX_LENGTH;

/** Context-specific words (NIST: "the name of the service"), refused anywhere in a password. */
export const SERVICE_NAMES: readonly string[] = ['gatehouse'];

/**
 * The blocklist, one lower-cased password a line. Resolved against this module so that the same
 * relative path works from `src/core` (tsx) and from `dist/core` (the build): both are two levels
 * below the package root, where `assets/` is.
 */
export const COMMON_PASSWORDS_FILE = fileURLToPath(
  new URL('../../assets/common-passwords.txt', import.meta.url),
);

/** Edit distance at or below which a password counts as a variant of the username. */
const USERNAME_DISTANCE = 3;
/** Shorter usernames are found inside too many good passwords by chance. */
const MIN_USERNAME_LENGTH = 3;
/** A blocklisted word found under added digits or symbols must be at least this long. */
const MIN_CORE_LENGTH = 4;
/** A run shorter than this is not a repeat or a sequence ("ab" is just two letters). */
const MIN_RUN = 3;
/** Characters outside runs that still leave a password "only runs" (abcdefghijk1, 9876543210ab). */
const RUN_EXTRAS = 2;

let commonPasswords: ReadonlySet<string> | undefined;

/**
 * The blocklist as a set, read once (about 49,000 entries: some 5 MB of heap, ~20 ms). Called at
 * start-up so that a missing file stops the service instead of the first password change.
 */
export function loadCommonPasswords(): ReadonlySet<string> {
  if (commonPasswords === undefined) {
    const lines = readFileSync(COMMON_PASSWORDS_FILE, 'utf8').split('\n');
    commonPasswords = new Set(lines.filter((line) => line !== ''));
  }
  return commonPasswords;
}

/** The rule a new password breaks, as a sentence that never quotes it; undefined when it passes. */
export function passwordPolicyProblem(
  password: string,
  username: string,
  policy: PasswordPolicy,
): string | undefined {
  const length = [...password].length;
  if (length < policy.minLength) return `The password must be at least ${policy.minLength} characters long.`;
  if (length > PASSWORD_MAX_LENGTH)
    return `The password must be at most ${PASSWORD_MAX_LENGTH} characters long.`;

  // U+FFFD is what a decoder puts for bytes that are not UTF-8: as part of a password it would
  // match any such bytes a client sends in its place.
  if (password.includes('\uFFFD')) {
    return 'The password must not contain the replacement character U+FFFD.';
  }
  // Case and compatibility forms (full-width letters, ligatures) do not make a password different.
  const folded = fold(password);
  // NFKC writes some characters as many (U+FDFA as 18): the checks below take time in proportion
  // to the folded length, which a password of 1,024 such characters would make 18 times longer.
  if ([...folded].length > FOLDED_MAX_LENGTH) {
    return `The password must be at most ${FOLDED_MAX_LENGTH} characters long once normalized (NFKC).`;
  }
  const bare = withoutSeparators(folded);
  for (const name of usernameForms(fold(username))) {
    if (folded.includes(name) || bare.includes(withoutSeparators(name))) {
      return 'The password must not contain the username.';
    }
    if (name.includes(folded)) return 'The password must not be a part of the username.';
    if (withinDistance(folded, name, USERNAME_DISTANCE)) {
      return 'The password must not be the username with a few characters changed.';
    }
  }
  if (SERVICE_NAMES.some((name) => folded.includes(name))) {
    return 'The password must not contain the name of the service.';
  }
  if (isRepetitive(folded)) {
    return 'The password must not be only repeated characters or sequences (such as aaaa, abcabc, 1234, qwerty).';
  }
  const common = loadCommonPasswords();
  if (common.has(folded)) return 'The password must not be a commonly used or breached password.';
  // "Password123456", "!!summer2024!!": a listed password with only digits or symbols around it.
  const core = letterCore(folded);
  if ([...core].length >= MIN_CORE_LENGTH && common.has(core)) {
    return 'The password must not be a commonly used or breached password with only digits or symbols added.';
  }
  return undefined;
}

const LETTER = /^\p{L}$/u;

/**
 * The text from its first letter to its last ("!!summer2024!!" → "summer"). Not a regular
 * expression: `[^\p{L}]+$` tried at every place backtracks in quadratic time over a long run of
 * non-letters that a letter ends.
 */
function letterCore(text: string): string {
  const chars = [...text];
  let start = 0;
  while (start < chars.length && !LETTER.test(chars[start] ?? '')) start += 1;
  let end = chars.length;
  while (end > start && !LETTER.test(chars[end - 1] ?? '')) end -= 1;
  return chars.slice(start, end).join('');
}

function fold(text: string): string {
  return text.normalize('NFKC').toLowerCase();
}

/** "john.smith" and "john_smith" are "johnsmith" to someone guessing. */
function withoutSeparators(text: string): string {
  return text.replace(/[^\p{L}\p{N}]+/gu, '');
}

/**
 * The forms of a username a password must keep away from: the name, and for an e-mail address
 * also its local part (john.smith@corp.example → john.smith); each also without separators.
 * Forms shorter than MIN_USERNAME_LENGTH are left out.
 */
function usernameForms(user: string): string[] {
  const at = user.lastIndexOf('@');
  const names = at > 0 ? [user, user.slice(0, at)] : [user];
  return names.filter(
    (name) =>
      [...withoutSeparators(name)].length >= MIN_USERNAME_LENGTH && [...name].length >= MIN_USERNAME_LENGTH,
  );
}

/**
 * Sequences a run may follow, forwards or backwards: the alphabet, the digits (cyclic, as on the
 * number row: 7890123), the letter rows and the columns of a QWERTY keyboard.
 */
const SEQUENCES: readonly { readonly chars: readonly string[]; readonly cyclic: boolean }[] = [
  { chars: [...'abcdefghijklmnopqrstuvwxyz'], cyclic: false },
  { chars: [...'0123456789'], cyclic: true },
  ...['qwertyuiop', 'asdfghjkl', 'zxcvbnm'].map((row) => ({ chars: [...row], cyclic: false })),
  ...['1qaz', '2wsx', '3edc', '4rfv', '5tgb', '6yhn', '7ujm', '8ik', '9ol', '0p'].map((column) => ({
    chars: [...column],
    cyclic: false,
  })),
];

/** Whether `b` follows `a` in the sequence, in the given direction. */
function follows(sequence: (typeof SEQUENCES)[number], direction: 1 | -1, a: string, b: string): boolean {
  const from = sequence.chars.indexOf(a);
  if (from < 0) return false;
  const size = sequence.chars.length;
  const to = from + direction;
  if (sequence.cyclic) return sequence.chars[(to + size) % size] === b;
  return to >= 0 && to < size && sequence.chars[to] === b;
}

/**
 * True when the password is one unit said over and over (aaaaaaaaaaaa, abcabcabcabc,
 * passwordpassword), or is made of runs of at least three repeated or sequential characters
 * (aaaa1234, 1234abcd, qwertyasdfgh) and at most two other characters (9876543210ab).
 */
export function isRepetitive(folded: string): boolean {
  const chars = [...folded];
  const n = chars.length;
  if (n === 0) return false;
  // One unit over and over: the string's shortest period (from its prefix function, in linear
  // time; trying each period in turn took quadratic time, 0.1 s for a crafted 4,000 characters)
  // is at most half its length.
  const border = new Array<number>(n).fill(0);
  for (let i = 1; i < n; i += 1) {
    let k = border[i - 1] ?? 0;
    while (k > 0 && chars[i] !== chars[k]) k = border[k - 1] ?? 0;
    if (chars[i] === chars[k]) k += 1;
    border[i] = k;
  }
  if ((n - (border[n - 1] ?? 0)) * 2 <= n) return true;
  // longest[m][i]: the length of the run from i that steps by rule m throughout.
  const rules: ((a: string, b: string) => boolean)[] = [(a, b) => a === b];
  for (const sequence of SEQUENCES) {
    rules.push((a, b) => follows(sequence, 1, a, b));
    rules.push((a, b) => follows(sequence, -1, a, b));
  }
  const longest = rules.map((rule) => {
    const run = new Array<number>(n).fill(1);
    for (let i = n - 2; i >= 0; i -= 1) {
      if (rule(chars[i] as string, chars[i + 1] as string)) run[i] = (run[i + 1] ?? 1) + 1;
    }
    return run;
  });
  // covered[k][i]: chars[i..] splits into such runs and at most k other characters. A run from i
  // may stop anywhere from MIN_RUN to its longest, so row[i] holds when the first covered place at
  // or after i + MIN_RUN (`nextCovered`) is within the longest run: linear, where trying each
  // length took quadratic time on one long run.
  const covered = Array.from({ length: RUN_EXTRAS + 1 }, () => new Array<boolean>(n + 1).fill(false));
  for (let k = 0; k <= RUN_EXTRAS; k += 1) {
    const row = covered[k] as boolean[];
    const fewer = covered[k - 1];
    const nextCovered = new Array<number>(n + 1).fill(Number.POSITIVE_INFINITY);
    row[n] = true;
    nextCovered[n] = n;
    for (let i = n - 1; i >= 0; i -= 1) {
      const next = nextCovered[i + MIN_RUN] ?? Number.POSITIVE_INFINITY;
      row[i] = fewer?.[i + 1] === true || longest.some((run) => next <= i + (run[i] ?? 1));
      nextCovered[i] = row[i] ? i : (nextCovered[i + 1] ?? Number.POSITIVE_INFINITY);
    }
  }
  return covered[RUN_EXTRAS]?.[0] === true;
}

/** Levenshtein distance of a and b is at most `limit` (computed only when it can be). */
function withinDistance(a: string, b: string, limit: number): boolean {
  const x = [...a];
  const y = [...b];
  if (Math.abs(x.length - y.length) > limit) return false;
  let previous = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i += 1) {
    const current = [i];
    let best = i;
    for (let j = 1; j <= y.length; j += 1) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      const value = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + cost,
      );
      current.push(value);
      best = Math.min(best, value);
    }
    // Every later row is at least this row's minimum: no need to go on.
    if (best > limit) return false;
    previous = current;
  }
  return (previous[y.length] ?? 0) <= limit;
}
