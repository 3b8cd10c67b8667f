import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { isUniqueViolation, type Store } from '../store/connect.js';
import type { Role } from '../store/repositories/users.js';
import { ROLES } from './accounts.js';
import type { AuditService } from './audit.js';
import { type Actor, actorOf, canSeeTenant, managedTenantIds } from './authorization.js';
import type { Clock } from './clock.js';
import type { JobControl, JobOutcome, JobRunner } from './job-runner.js';
import { type JobTask, type JobView, jobView } from './jobs.js';
import { accountKey } from './secrets.js';
import type { AuthContext, RequestMeta } from './sessions.js';
import type { UserAdminService } from './user-admin.js';

/**
 * `csv`: a header row naming the columns (any order, case-insensitive, unknown ones ignored), then
 * one user per line; fields may be quoted ("" inside quotes is a quote) but may not span lines.
 * `ndjson`: one JSON object per line with the same field names.
 */
export type ImportFormat = 'csv' | 'ndjson';

export const IMPORT_COLUMNS = [
  'username',
  'password',
  'firstName',
  'lastName',
  'displayName',
  'email',
  'phone',
  'tenant_code',
  'role',
] as const;
type ImportColumn = (typeof IMPORT_COLUMNS)[number];

/** The largest import body accepted: room for well over 100,000 users. */
export const IMPORT_BODY_LIMIT = 256 * 1024 * 1024;
/** Failed rows listed in the job's `job_tasks`; all of them are kept in `import_failures`. */
export const REPORTED_FAILURES = 1000;
const PROGRESS_EVERY_ROWS = 250;
const FAILURE_BATCH = 200;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

interface Spooled {
  readonly file: string;
  readonly rows: number;
  readonly sha256: string;
}

interface RowFailure {
  readonly row: number;
  readonly reason: string;
}

const counted = (n: number) => n.toLocaleString('en-US');

/**
 * Bulk user creation as a job: the request body is spooled to a file under the data directory
 * (never held whole in memory), the caller gets the job at once, and the job creates the users
 * row by row through the same rules as `POST /users`. A bad row is recorded and skipped.
 */
export class UserImportService {
  readonly #store: Store;
  readonly #config: Config;
  readonly #clock: Clock;
  readonly #runner: JobRunner;
  readonly #userAdmin: UserAdminService;
  readonly #audit: AuditService;

  constructor(
    store: Store,
    clock: Clock,
    config: Config,
    runner: JobRunner,
    userAdmin: UserAdminService,
    audit: AuditService,
  ) {
    this.#store = store;
    this.#clock = clock;
    this.#config = config;
    this.#runner = runner;
    this.#userAdmin = userAdmin;
    this.#audit = audit;
  }

  /**
   * Spools `body` and starts the import job. With an `idempotencyKey` the caller used before for
   * the same body, answers that first job instead; for a different body, IDEMPOTENCY_KEY_REUSED.
   */
  async submit(
    auth: AuthContext,
    body: Readable,
    format: ImportFormat,
    idempotencyKey: string | undefined,
    meta: RequestMeta,
  ): Promise<JobView> {
    const actor = await actorOf(this.#store, auth);
    // Refused before the body is read: a caller who may create no user should not upload 256 MiB.
    const managed = managedTenantIds(actor);
    if (managed !== undefined && managed.length === 0) {
      body.resume();
      throw new GatehouseError('FORBIDDEN', 'your role does not allow creating users');
    }
    if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
      body.resume();
      throw new GatehouseError(
        'VALIDATION_FAILED',
        'headers/idempotency-key must be 1-255 visible ASCII characters',
      );
    }
    const spooled = await this.#spool(body, format);
    let handedOver = false;
    try {
      if (idempotencyKey !== undefined) {
        const first = await this.#firstJob(auth, idempotencyKey, spooled.sha256);
        if (first) return first;
      }
      const tenantId = actor.tenancies[0]?.tenantId ?? null;
      const job = await this.#runner.submit(
        {
          action: 'user.import',
          summary: `Import ${counted(spooled.rows)} users (${format})`,
          objectType: 'user',
          objectName: format,
          statusDetail: `0 of ${counted(spooled.rows)} users imported`,
          userId: auth.principal.kind === 'user' ? auth.principal.id : null,
          tenantId,
        },
        (control) =>
          this.#run(control, auth, actor, format, spooled, tenantId, meta).finally(() =>
            rm(spooled.file, { force: true }),
          ),
      );
      handedOver = true;
      if (idempotencyKey !== undefined) {
        await this.#store.imports
          .addRequest({
            user_id: auth.principal.id,
            idempotency_key: idempotencyKey,
            job_id: job.id,
            body_sha256: spooled.sha256,
            created_at: this.#clock.now(),
          })
          // Two retries raced: both run, and later retries find the one recorded first.
          .catch((error: unknown) => {
            if (!isUniqueViolation(error)) throw error;
          });
      }
      return job;
    } finally {
      if (!handedOver) await rm(spooled.file, { force: true });
    }
  }

  /**
   * The CLI's import: run with the rights of an existing active user (by name), so that the same
   * rules apply as over HTTP and the audit log names who ran it.
   */
  async submitAs(username: string, body: Readable, format: ImportFormat): Promise<JobView> {
    const user = await this.#store.users.findByUsernameKey(accountKey(username));
    if (user?.active !== 1) {
      body.destroy();
      throw new GatehouseError(
        'NOT_FOUND',
        `no active user "${username.slice(0, 128)}" to run the import as`,
      );
    }
    const auth: AuthContext = {
      principal: { kind: 'user', id: user.id, name: user.username },
      session: undefined,
    };
    return this.submit(auth, body, format, undefined, { ip: '', userAgent: 'gatehouse import' });
  }

  /** Waits until a job ends, calling `onProgress` whenever its `status_detail` changes. */
  async follow(jobId: string, onProgress: (statusDetail: string) => void, pollMs = 200): Promise<JobView> {
    let last = '';
    for (;;) {
      const row = await this.#store.jobs.findById(jobId);
      if (!row) throw new GatehouseError('NOT_FOUND', 'no such job');
      if (row.status_detail !== last) {
        last = row.status_detail;
        onProgress(last);
      }
      if (row.status !== 'running') return jobView(row);
      await sleep(pollMs);
    }
  }

  async #firstJob(auth: AuthContext, key: string, sha256: string): Promise<JobView | undefined> {
    const request = await this.#store.imports.findRequest(auth.principal.id, key);
    if (!request) return undefined;
    if (request.body_sha256 !== sha256) {
      throw new GatehouseError(
        'IDEMPOTENCY_KEY_REUSED',
        'this Idempotency-Key was used for an import with a different body; use a new key',
      );
    }
    const job = await this.#store.jobs.findById(request.job_id);
    if (!job) throw new GatehouseError('NOT_FOUND', 'the job of this Idempotency-Key no longer exists');
    return jobView(job);
  }

  /** Writes the body to a file while hashing it and counting its non-blank lines. */
  async #spool(body: Readable, format: ImportFormat): Promise<Spooled> {
    const directory = path.join(this.#config.dataDir, 'imports');
    await mkdir(directory, { recursive: true, mode: 0o700 });
    const file = path.join(directory, `${randomUUID()}.${format}`);
    const counter = new LineCounter(IMPORT_BODY_LIMIT);
    try {
      await pipeline(body, counter, createWriteStream(file, { mode: 0o600 }));
    } catch (error) {
      await rm(file, { force: true });
      if (isGatehouseError(error)) throw error;
      throw new GatehouseError('VALIDATION_FAILED', 'the request body could not be read to its end');
    }
    const lines = counter.lines;
    return { file, rows: format === 'csv' ? Math.max(0, lines - 1) : lines, sha256: counter.sha256() };
  }

  async #run(
    control: JobControl,
    auth: AuthContext,
    actor: Actor,
    format: ImportFormat,
    spooled: Spooled,
    tenantId: string | null,
    meta: RequestMeta,
  ): Promise<JobOutcome> {
    const total = spooled.rows;
    const reported: RowFailure[] = [];
    let pending: RowFailure[] = [];
    let imported = 0;
    let failed = 0;
    let processed = 0;
    const tenants = new Map<string, string | null>();
    const fail = async (failure: RowFailure) => {
      failed += 1;
      if (reported.length < REPORTED_FAILURES) reported.push(failure);
      pending.push(failure);
      if (pending.length >= FAILURE_BATCH) {
        await this.#store.imports.addFailures(control.jobId, pending);
        pending = [];
      }
    };

    const lines = createInterface({
      input: createReadStream(spooled.file),
      crlfDelay: Number.POSITIVE_INFINITY,
    });
    let lineNumber = 0;
    let header: (ImportColumn | undefined)[] | undefined;
    for await (const rawLine of lines) {
      lineNumber += 1;
      const line = lineNumber === 1 ? rawLine.replace(/^\uFEFF/, '') : rawLine;
      if (line.trim() === '') continue;
      if (format === 'csv' && header === undefined) {
        header = readHeader(line);
        continue;
      }
      const row = format === 'csv' ? csvRow(line, header ?? []) : jsonRow(line);
      const password = typeof row === 'string' ? undefined : row.password;
      try {
        if (typeof row === 'string') throw new GatehouseError('VALIDATION_FAILED', row);
        await this.#createRow(auth, actor, row, tenants, meta);
        imported += 1;
      } catch (error) {
        if (!isGatehouseError(error)) throw error;
        await fail({ row: lineNumber, reason: withoutSecret(error.detail || error.userMessage, password) });
      }
      processed += 1;
      if (processed % PROGRESS_EVERY_ROWS === 0) {
        await control.report(
          `${counted(imported)} of ${counted(total)} users imported`,
          total === 0 ? 100 : (processed / total) * 100,
        );
      }
    }
    await this.#store.imports.addFailures(control.jobId, pending);

    const summary = `${counted(imported)} of ${counted(total)} users imported; ${counted(failed)} rows failed`;
    await this.#audit.record({
      action: 'user.import',
      actor: auth.principal,
      target: { type: 'job', id: control.jobId, name: format },
      tenantId,
      meta,
      outcome: failed > 0 && imported === 0 ? 'failure' : 'success',
      reason: summary,
    });
    if (failed === 0) return { status: 'successful', statusDetail: summary, lastError: '' };
    const listed = failed > REPORTED_FAILURES ? `the first ${counted(REPORTED_FAILURES)} are` : 'each is';
    return {
      status: imported === 0 ? 'failed' : 'partially_failed',
      statusDetail: summary,
      lastError: `${counted(failed)} rows failed; ${listed} listed in job_tasks as "row N: reason"`,
      tasks: reported.map((failure) => failedTask(control.jobId, auth, failure)),
    };
  }

  async #createRow(
    auth: AuthContext,
    actor: Actor,
    row: Partial<Record<ImportColumn, string>>,
    tenants: Map<string, string | null>,
    meta: RequestMeta,
  ): Promise<void> {
    const username = row.username ?? '';
    if (username === '') throw new GatehouseError('VALIDATION_FAILED', 'username is required');
    const code = row.tenant_code ?? '';
    if (code === '') throw new GatehouseError('VALIDATION_FAILED', 'tenant_code is required');
    const role = (row.role ?? '') === '' ? 'user' : row.role;
    if (!ROLES.includes(role as Role)) {
      throw new GatehouseError('VALIDATION_FAILED', `role must be one of ${ROLES.join(', ')}`);
    }
    let tenantId = tenants.get(code);
    if (tenantId === undefined) {
      const tenant = await this.#store.tenants.findByCode(code);
      // A tenant the caller cannot see reads as one that does not exist.
      tenantId = tenant && canSeeTenant(actor, tenant.id) ? tenant.id : null;
      tenants.set(code, tenantId);
    }
    if (tenantId === null)
      throw new GatehouseError('NOT_FOUND', `no tenant with code "${code.slice(0, 64)}"`);
    await this.#userAdmin.create(
      auth,
      {
        username,
        password: row.password || undefined,
        firstName: row.firstName || undefined,
        lastName: row.lastName || undefined,
        displayName: row.displayName || undefined,
        email: row.email || undefined,
        phone: row.phone || undefined,
        primaryTenantId: tenantId,
        tenancies: [{ tenantId, role: role as Role }],
      },
      meta,
    );
  }
}

function failedTask(jobId: string, auth: AuthContext, failure: RowFailure): JobTask {
  return {
    id: `${jobId}/row-${failure.row}`,
    job_id: jobId,
    action: 'user.create',
    driver: 'gatehouse',
    object_id: '',
    object_type: 'user',
    resource_type: 'user',
    status: 'failed',
    status_detail: `row ${failure.row}: ${failure.reason}`,
    last_error: failure.reason,
    user_id: auth.principal.kind === 'user' ? auth.principal.id : '',
    request_payload: { row: failure.row },
  };
}

/** A reason must never echo the row's password, whatever rule produced it. */
function withoutSecret(reason: string, password: string | undefined): string {
  return password ? reason.split(password).join('***') : reason;
}

function readHeader(line: string): (ImportColumn | undefined)[] {
  const fields = splitCsv(line) ?? [];
  return fields.map((name) =>
    IMPORT_COLUMNS.find((column) => column.toLowerCase() === name.trim().toLowerCase()),
  );
}

function csvRow(
  line: string,
  header: readonly (ImportColumn | undefined)[],
): Partial<Record<ImportColumn, string>> | string {
  const fields = splitCsv(line);
  if (!fields) return 'malformed CSV line (unbalanced quotes)';
  const row: Partial<Record<ImportColumn, string>> = {};
  header.forEach((column, index) => {
    const value = fields[index];
    if (column && value !== undefined) row[column] = value;
  });
  return row;
}

function jsonRow(line: string): Partial<Record<ImportColumn, string>> | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return 'not a JSON object';
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'not a JSON object';
  const row: Partial<Record<ImportColumn, string>> = {};
  for (const column of IMPORT_COLUMNS) {
    const value = (parsed as Record<string, unknown>)[column];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') return `${column} must be a string`;
    row[column] = value;
  }
  return row;
}

/** One CSV line (RFC 4180 quoting, no line breaks inside fields); undefined if quotes do not balance. */
export function splitCsv(line: string): string[] | undefined {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  let index = 0;
  while (index < line.length) {
    const char = line[index];
    if (quoted) {
      if (char === '"' && line[index + 1] === '"') {
        field += '"';
        index += 2;
        continue;
      }
      if (char === '"') quoted = false;
      else field += char;
    } else if (char === '"' && field === '') quoted = true;
    else if (char === ',') {
      fields.push(field);
      field = '';
    } else field += char;
    index += 1;
  }
  if (quoted) return undefined;
  fields.push(field);
  return fields;
}

/** Passes bytes through while hashing them and counting lines that hold something. */
class LineCounter extends Transform {
  lines = 0;
  #bytes = 0;
  #lineHasContent = false;
  readonly #hash = createHash('sha256');
  readonly #limit: number;

  constructor(limit: number) {
    super();
    this.#limit = limit;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#bytes += chunk.length;
    if (this.#bytes > this.#limit) {
      done(
        new GatehouseError('BODY_TOO_LARGE', `an import body may hold at most ${IMPORT_BODY_LIMIT} bytes`),
      );
      return;
    }
    this.#hash.update(chunk);
    for (const byte of chunk) {
      if (byte === 0x0a) {
        if (this.#lineHasContent) this.lines += 1;
        this.#lineHasContent = false;
      } else if (byte !== 0x0d && byte !== 0x20 && byte !== 0x09) this.#lineHasContent = true;
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.#lineHasContent) this.lines += 1;
    this.#lineHasContent = false;
    done();
  }

  sha256(): string {
    return this.#hash.digest('hex');
  }
}
