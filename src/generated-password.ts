import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';

/** Where the generated admin password is left when no terminal shows it. */
export const GENERATED_PASSWORD_FILE = 'initial-admin-password';

/**
 * Hands the password the bootstrap generated for `admin` to the person starting Gatehouse. On a
 * terminal it is shown there. Otherwise the output is a log collector's (systemd, a container, a
 * pipe), which keeps what it is given for anyone who reads the logs (found by review: the
 * password in the log stream, at every log level): the password goes into
 * `<dataDir>/initial-admin-password`, readable by its owner only, beside the master key, and the
 * output says where. Never through the logger.
 */
export function handOverGeneratedPassword(
  password: string,
  dataDir: string,
  out: Writable & { readonly isTTY?: boolean },
): void {
  if (out.isTTY) {
    out.write(generatedPasswordNotice(password));
    return;
  }
  const file = path.join(dataDir, GENERATED_PASSWORD_FILE);
  const change = 'change it with `gatehouse user passwd --username admin --password-stdin`';
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    // A file left by an earlier store is replaced, not rewritten: 'wx' makes it with mode 0600.
    rmSync(file, { force: true });
    writeFileSync(file, `${password}\n`, { mode: 0o600, flag: 'wx' });
    out.write(
      `\nCreated user "admin" (root of tenant "system") with a generated password, written to ${file} (readable by its owner only): read it, delete the file, and ${change}.\n\n`,
    );
  } catch (error) {
    out.write(
      `\nCreated user "admin" (root of tenant "system") with a generated password that could not be written to ${file} (${(error as Error).message}); ${change}.\n\n`,
    );
  }
}

/** What a person reads once on the terminal when the bootstrap generated the admin password. */
function generatedPasswordNotice(password: string): string {
  return `\nCreated user "admin" (root of tenant "system") with the generated password:\n\n    ${password}\n\nIt is not shown again; change it with \`gatehouse user passwd --username admin --password-stdin\`.\n\n`;
}
