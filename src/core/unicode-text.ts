/**
 * A NUL, or half of a surrogate pair without its other half (text that is not valid Unicode): no
 * store keeps it faithfully (PostgreSQL refuses a NUL in text, and both stores would turn a lone
 * surrogate into U+FFFD), and no name, description or password needs it.
 */
const UNSTORABLE = /\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function isUnstorableText(text: string): boolean {
  return UNSTORABLE.test(text);
}
