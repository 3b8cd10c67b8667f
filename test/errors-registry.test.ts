import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERROR_CODES } from '../src/errors.js';

const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');
const rows = [...doc.matchAll(/^\| `([A-Z_]+)`\s*\| (\d{3})/gm)].map((m) => ({
  code: m[1]!,
  status: Number(m[2]),
}));

test('every error code in the registry is documented with its status, and nothing else is', () => {
  const documented = new Map(rows.map((r) => [r.code, r.status]));
  for (const [code, { status }] of Object.entries(ERROR_CODES)) {
    assert.equal(documented.get(code), status, `docs/errors.md: ${code} should be documented with ${status}`);
  }
  assert.deepEqual([...documented.keys()].sort(), Object.keys(ERROR_CODES).sort());
});
