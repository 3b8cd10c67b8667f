import { GatehouseError } from '../errors.js';

/** The profile fields an administrator sets; absent fields are left as they are. */
export interface UserProfile {
  readonly firstName?: string | undefined;
  readonly lastName?: string | undefined;
  readonly displayName?: string | undefined;
  readonly email?: string | undefined;
  readonly phone?: string | undefined;
}

const PROFILE_LIMITS = { firstName: 255, lastName: 255, displayName: 255, email: 254, phone: 64 } as const;
/** Listed once: checkProfile runs for every row of an import. */
const PROFILE_FIELDS = Object.entries(PROFILE_LIMITS) as [keyof typeof PROFILE_LIMITS, number][];
const CONTROL_CHARACTERS = /\p{Cc}/u;
const EMAIL = /^[^\s@]+@[^\s@]+$/;
const PHONE = /^[\d\s+().\-/x]*$/i;

/** The rules of a user's profile, the same for the API, the import and the CLI. */
export function checkProfile(profile: UserProfile): void {
  for (const [field, limit] of PROFILE_FIELDS) {
    const value = profile[field];
    if (value === undefined) continue;
    // Limits count characters (code points); a string no longer in UTF-16 units has no more of them.
    if (value.length > limit && [...value].length > limit) {
      throw new GatehouseError('VALIDATION_FAILED', `body/${field} must be at most ${limit} characters`);
    }
    if (CONTROL_CHARACTERS.test(value)) {
      throw new GatehouseError('VALIDATION_FAILED', `body/${field} must not contain control characters`);
    }
  }
  if (profile.email !== undefined && profile.email !== '' && !EMAIL.test(profile.email)) {
    throw new GatehouseError('VALIDATION_FAILED', 'body/email must be an e-mail address (name@domain)');
  }
  if (profile.phone !== undefined && !PHONE.test(profile.phone)) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      'body/phone may hold only digits, spaces and + ( ) . - / x',
    );
  }
}
