import { hash, randomBytes } from 'node:crypto';

/** Prefixes make leaked secrets easy to recognise (and to scan for) and tell the kinds apart. */
export const SESSION_SECRET_PREFIX = 'gss_';
export const API_TOKEN_PREFIX = 'gtk_';

/** 256 bits of randomness, URL-safe. */
export function newSecret(prefix: string): string {
  return prefix + randomBytes(32).toString('base64url');
}

/**
 * Secrets of 256 random bits need no slow hash: SHA-256 is preimage-resistant, and it lets the
 * store find the row by the hash in one indexed lookup. Every authenticated request hashes its
 * token: the one-shot `hash` takes ~0.25 µs where a `createHash` object took ~0.9 µs.
 */
export function hashSecret(secret: string): string {
  return hash('sha256', secret, 'base64url');
}

/** Case-insensitive unique key for usernames and node logins. */
export function accountKey(name: string): string {
  return name.normalize('NFKC').toLowerCase();
}
