import { randomFillSync } from 'node:crypto';

let lastMs = 0;
let sequence = 0;

/**
 * Random bytes are drawn from a pool refilled 4 KiB at a time (as Node's randomUUID and the uuid
 * package do): one randomBytes(16) per id costs a call into OpenSSL and an allocation each, which
 * an import of 100,000 users (two ids per user) spent a seventh of its time on.
 */
const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let poolOffset = POOL_BYTES;
/** Built in place, reused: ids are made one at a time. */
const scratch = Buffer.allocUnsafe(16);
/** The id's text, written in place as ASCII and read off as one string, dashes where they go. */
const text = Buffer.from('00000000-0000-0000-0000-000000000000', 'latin1');
/** Where each byte's two hex digits go in `text`. */
const TEXT_OFFSETS = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
const HEX_DIGITS = Buffer.from('0123456789abcdef', 'latin1');

function fillRandom(target: Buffer): void {
  if (poolOffset + target.length > POOL_BYTES) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  pool.copy(target, 0, poolOffset, poolOffset + target.length);
  poolOffset += target.length;
}

/**
 * UUIDv7 (RFC 9562): time-ordered, so new rows land at the end of B-tree indexes instead of
 * scattering across them as v4 ids do. Within one millisecond a 12-bit counter in `rand_a`
 * (RFC 9562, method 1) keeps the ids of this process increasing, so that records made in the
 * same millisecond (audit events of one request) still sort in the order they happened.
 * Node 20 has no built-in v7. The text is written digit by digit into a buffer and read off once:
 * a hex string cut into five and joined made ~400 bytes of garbage an id, and an import makes two
 * ids a user.
 */
export function newId(now: number = Date.now()): string {
  if (now > lastMs) {
    lastMs = now;
    fillRandom(scratch);
    sequence = scratch.readUInt16BE(0) & 0x3ff; // leave room to count up
  } else {
    sequence += 1;
    if (sequence > 0xfff) {
      lastMs += 1;
      sequence = 0;
    }
  }
  const bytes = scratch;
  fillRandom(bytes);
  bytes.writeUIntBE(lastMs, 0, 6);
  bytes[6] = 0x70 | (sequence >> 8);
  bytes[7] = sequence & 0xff;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  for (let i = 0; i < 16; i += 1) {
    const byte = bytes[i] as number;
    const at = TEXT_OFFSETS[i] as number;
    text[at] = HEX_DIGITS[byte >> 4] as number;
    text[at + 1] = HEX_DIGITS[byte & 0x0f] as number;
  }
  return text.toString('latin1', 0, 36);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isId(text: string): boolean {
  return UUID.test(text);
}

/**
 * The lowest id `newId` makes at `ms` (epoch milliseconds): every id it made before `ms` sorts
 * below it, as text and so in the primary-key indexes of both stores.
 */
export function firstIdAt(ms: number): string {
  const hex = Math.min(Math.max(0, Math.floor(ms)), 0xffff_ffff_ffff)
    .toString(16)
    .padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8)}-0000-0000-000000000000`;
}
