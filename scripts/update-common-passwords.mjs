// Rebuilds assets/common-passwords.txt, the password blocklist Gatehouse ships, from the npm
// package @zxcvbn-ts/language-common (MIT; its list comes from zxcvbn's frequency-ranked
// passwords of public breach corpora). Run by hand when moving to a new version of the package:
//   node scripts/update-common-passwords.mjs [version]
// The list is kept in the repository (not read from node_modules) so that Gatehouse needs no
// network and no extra dependency at run time, and so that a change to it shows up in review.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const PACKAGE = '@zxcvbn-ts/language-common';
const version = process.argv[2] ?? '4.1.3';
const root = path.resolve(import.meta.dirname, '..');
const work = mkdtempSync(path.join(tmpdir(), 'gatehouse-passwords-'));
try {
  const tarball = execFileSync('npm', ['pack', `${PACKAGE}@${version}`, '--silent'], { cwd: work })
    .toString()
    .trim()
    .split('\n')
    .pop();
  execFileSync('tar', ['xzf', tarball], { cwd: work });
  const source = readFileSync(path.join(work, 'package/src/passwords.json'));
  const entries = JSON.parse(source.toString('utf8'));
  if (!Array.isArray(entries) || entries.some((entry) => typeof entry !== 'string')) {
    throw new Error(`${PACKAGE}@${version}: src/passwords.json is not an array of strings`);
  }
  // Compared lower-cased at run time; blank or multi-line entries could not be matched anyway.
  const lines = [...new Set(entries.map((entry) => entry.toLowerCase()))].filter(
    (entry) => entry !== '' && !/[\r\n]/.test(entry),
  );
  writeFileSync(path.join(root, 'assets/common-passwords.txt'), `${lines.join('\n')}\n`);
  const sha256 = createHash('sha256').update(source).digest('hex');
  console.log(`wrote ${lines.length} entries from ${PACKAGE}@${version} (passwords.json sha256 ${sha256})`);
  console.log('update the version and checksum in assets/common-passwords.LICENSE.txt');
} finally {
  rmSync(work, { recursive: true, force: true });
}
