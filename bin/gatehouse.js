#!/usr/bin/env node
// The CLI is compiled TypeScript; this launcher only finds it and says what to do when it is missing.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/index.js', import.meta.url);
if (!existsSync(entry)) {
  const root = fileURLToPath(new URL('..', import.meta.url));
  process.stderr.write(
    `gatehouse: ${fileURLToPath(entry)} is missing: the CLI is not built. Run \`npm run build\` in ${root} first.\n`,
  );
  process.exit(1);
}
const { main } = await import(entry.href);
await main();
