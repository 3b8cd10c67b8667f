import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import streamArray from 'stream-json/streamers/stream-array.js';
import type { Config } from '../config.js';
import { GatehouseError, isGatehouseError } from '../errors.js';
import { isUniqueViolation, type Store } from '../store/connect.js';
import type { Role } from '../store/repositories/users.js';
import { ROLES } from './accounts.js';
import type { AuditService } from './audit.js';
import { type Actor, actorOf, canSeeTenant, managedTenantIds } from './authorization.js';
import type { Clock } from './clock.js';
import { EventLoopTurns } from './concurrency.js';
import { type JobControl, type JobOutcome, type JobRunner, wasInterrupted } from './job-runner.js';
import { type JobTask, type JobView, jobView } from './jobs.js';
import { accountKey } from './secrets.js';
import type { AuthContext, RequestMeta } from './sessions.js';
import { isUnstorableText } from './unicode-text.js';
import type { UserAdminService, UserCreation } from './user-admin.js';

/**
 * `csv`: a header row naming the columns (any order, case-insensitive, unknown ones ignored), then
 * one user per line; fields may be quoted ("" inside quotes is a quote) but may not span lines,
 * so that a stray quote spoils its own line and not every line after it.
 * `ndjson`: one JSON object per line with the same field names.
 * `json`: one JSON array of such objects, read element by element.
 */
export type ImportFormat = 'csv' | 'ndjson' | 'json';

export const IMPORT_COLUMNS = [
  'username',
  'password',
  // Instead of `password`: an argon2, bcrypt or scrypt hash from the system being left behind.
  'password_hash',
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
/**
 * Failed rows listed in the job's `job_tasks` (the lowest rows), and kept in `import_failures`
 * (the first recorded): a 256 MiB body of bad lines is some hundred million failures, and kept
 * whole they cost the store ~125 bytes for each byte sent, for the jobs' retention period.
 */
export const REPORTED_FAILURES = 1000;
/**
 * Rows checked, hashed and written together (one transaction), and between progress reports:
 * 1,000 rows are a few multi-row statements per table, well under both stores' parameter limits.
 */
const ROWS_PER_BATCH = 1000;
/**
 * Batches written at once, the next being checked meanwhile. Two keep SQLite's writer thread busy
 * (it finds the next batch waiting when it commits one); more would only hold more rows in memory.
 */
const WRITES_IN_FLIGHT = 2;
const FAILURE_BATCH = 200;
/**
 * Passwords hashed at once within a batch, per hashing thread (GATEHOUSE_HASH_THREADS): two, so
 * that a thread never waits for the next row while this one is being checked.
 */
const ROWS_IN_FLIGHT_PER_HASH_THREAD = 2;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
/** A spool file that is no job's and has not been written to for this long is an abandoned upload. */
const ABANDONED_SPOOL_MS = 60 * 60 * 1000;
const JOB_SPOOL_NAME = /^([0-9a-f-]{36})\.(csv|ndjson|json)$/;

interface Spooled {
  readonly file: string;
  readonly rows: number;
  readonly sha256: string;
}

interface RowFailure {
  readonly row: number;
  readonly reason: string;
}

type RowFields = Partial<Record<ImportColumn, string>>;

/** A row as read from the file: its fields, or why they could not be read. */
interface ReadRow {
  readonly row: number;
  readonly fields: RowFields | string;
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
   * A first job that a stopping server interrupted is run again (its message says to send the
   * request again, and a client retrying with its key should not get the dead job back), and the
   * key names the new one from then on.
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
    // The job outlives the request: it keeps who asked and from where, not the request's connection.
    const jobMeta: RequestMeta = { ip: meta.ip, userAgent: meta.userAgent };
    let handedOver = false;
    try {
      const first =
        idempotencyKey === undefined ? undefined : await this.#firstJob(auth, idempotencyKey, spooled.sha256);
      if (first && !wasInterrupted(first.last_error)) return first;
      // Rows may go to several tenants: the job is the importer's (and root's) to read, filed under
      // no tenant, so that its failed rows never show to members of a tenant they did not go to.
      const tenantId = null;
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
        async (control) => {
          // Named after its job from now on, so that a sweep after a crash knows whose it is.
          const file = path.join(path.dirname(spooled.file), `${control.jobId}.${format}`);
          await rename(spooled.file, file);
          try {
            return await this.#run(control, auth, actor, format, { ...spooled, file }, tenantId, jobMeta);
          } finally {
            await rm(file, { force: true });
          }
        },
      );
      handedOver = true;
      if (idempotencyKey !== undefined && first) {
        // Two retries raced: both run, and later retries find the one that moved the key.
        await this.#store.imports.moveRequest(auth.principal.id, idempotencyKey, first.id, job.id);
      } else if (idempotencyKey !== undefined) {
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

  /** Waits until a job ends, calling `onProgress` whenever its progress or `status_detail` changes. */
  async follow(jobId: string, onProgress: (job: JobView) => void, pollMs = 200): Promise<JobView> {
    let last = '';
    for (;;) {
      const row = await this.#store.jobs.findById(jobId);
      if (!row) throw new GatehouseError('NOT_FOUND', 'no such job');
      const seen = `${row.progress}/${row.status_detail}`;
      if (seen !== last) {
        last = seen;
        onProgress(jobView(row));
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
    // Renamed to the job id once the job exists; until then the sweep tells it by this prefix.
    const file = path.join(directory, `upload-${randomUUID()}.${format}`);
    const counter = new LineCounter(IMPORT_BODY_LIMIT, format);
    try {
      await pipeline(body, counter, createWriteStream(file, { mode: 0o600 }));
    } catch (error) {
      await rm(file, { force: true });
      if (isGatehouseError(error)) throw error;
      throw new GatehouseError('VALIDATION_FAILED', 'the request body could not be read to its end');
    }
    const lines = counter.lines;
    const sha256 = counter.sha256();
    if (format !== 'json') return { file, rows: format === 'csv' ? Math.max(0, lines - 1) : lines, sha256 };
    // A JSON array has no lines to count, and one syntax error spoils every element after it:
    // read it through once, so that a broken document is refused before any user is created.
    let rows = 0;
    try {
      for await (const _ of jsonElements(file)) rows += 1;
    } catch (error) {
      await rm(file, { force: true });
      const reason = error instanceof Error ? error.message.slice(0, 200) : 'unreadable';
      throw new GatehouseError('VALIDATION_FAILED', `body must be a JSON array of user objects: ${reason}`);
    }
    return { file, rows, sha256 };
  }

  /**
   * Removes spool files nobody will read: those of jobs that are no longer running (their process
   * died mid-import) and uploads abandoned before they became a job. Runs at start-up.
   */
  async sweepSpool(): Promise<number> {
    const directory = path.join(this.#config.dataDir, 'imports');
    let names: string[];
    try {
      names = await readdir(directory);
    } catch {
      return 0;
    }
    let removed = 0;
    for (const name of names) {
      const file = path.join(directory, name);
      const jobId = JOB_SPOOL_NAME.exec(name)?.[1];
      const abandoned = jobId
        ? (await this.#store.jobs.findById(jobId))?.status !== 'running'
        : this.#clock.now() - (await stat(file).catch(() => ({ mtimeMs: 0 }))).mtimeMs > ABANDONED_SPOOL_MS;
      if (abandoned) {
        await rm(file, { force: true });
        removed += 1;
      }
    }
    return removed;
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
      // A batch's check failures may come in before the batch ahead of it has answered: keep the
      // lowest rows, cutting the list back now and then rather than sorting on every failure.
      reported.push(failure);
      if (reported.length >= 2 * REPORTED_FAILURES) lowestRows(reported);
      if (failed > REPORTED_FAILURES) return;
      pending.push(failure);
      if (pending.length >= FAILURE_BATCH) {
        const batch = pending;
        pending = [];
        await this.#store.imports.addFailures(control.jobId, batch);
      }
    };
    // A batch's rows are checked (and their passwords hashed) while the batches before are
    // written: by the PostgreSQL server, or by SQLite on its writer thread (Store.insertBatch).
    const checkBatch = async (batch: readonly ReadRow[]) => {
      const creations: { row: number; secrets: (string | undefined)[]; creation: UserCreation }[] = [];
      const turns = new EventLoopTurns();
      for (const { row, fields } of batch) {
        const turn = turns.take();
        if (turn) await turn;
        const secrets = typeof fields === 'string' ? [] : [fields.password, fields.password_hash];
        try {
          if (typeof fields === 'string') throw new GatehouseError('VALIDATION_FAILED', fields);
          // Awaited only at a tenant's first row: an await per row cost more than the row's checks.
          const code = fields.tenant_code ?? '';
          if (code !== '' && !tenants.has(code)) tenants.set(code, await this.#visibleTenantId(actor, code));
          creations.push({ row, secrets, creation: creationOf(fields, tenants) });
        } catch (error) {
          if (!isGatehouseError(error)) throw error;
          await fail({ row, reason: withoutSecrets(error.detail || error.userMessage, secrets) });
        }
      }
      const checked = await this.#userAdmin.checkMany(
        auth,
        creations.map((c) => c.creation),
        meta,
        // Bulk hashing may use every core (HashPool's burst), whatever this process's share.
        ROWS_IN_FLIGHT_PER_HASH_THREAD * Math.max(this.#config.hashThreads, availableParallelism()),
      );
      return { rows: batch.length, creations, checked };
    };
    const namesInFlight = new Set<string>();
    const writeBatch = async ({ rows, creations, checked }: Awaited<ReturnType<typeof checkBatch>>) => {
      const results = await this.#userAdmin.writeMany(checked, namesInFlight);
      for (const [index, result] of results.entries()) {
        const { row, secrets } = creations[index] ?? { row: 0, secrets: [] };
        if (isGatehouseError(result)) {
          await fail({ row, reason: withoutSecrets(result.detail || result.userMessage, secrets) });
        } else imported += 1;
      }
      processed += rows;
      await control.report(
        `${counted(imported)} of ${counted(total)} users imported`,
        total === 0 ? 100 : (processed / total) * 100,
      );
    };
    // Up to WRITES_IN_FLIGHT batches are being written while the next is checked: on SQLite the
    // writer thread finds the next batch waiting when it finishes one.
    const writes: Promise<void>[] = [];
    const writesSettled = () => Promise.allSettled(writes);
    const importBatch = async (batch: readonly ReadRow[]) => {
      // Stopping (a shutdown's drain): no new batch is checked and hashed, which takes seconds with
      // passwords in clear; the batches being written finish and are counted.
      try {
        control.throwIfStopping();
      } catch (error) {
        await writesSettled();
        throw error;
      }
      const checked = await checkBatch(batch).catch(async (error: unknown) => {
        await writesSettled();
        throw error;
      });
      while (writes.length >= WRITES_IN_FLIGHT) {
        // A failed write stops the import, once the writes after it have settled.
        await (writes[0] as Promise<void>).catch(async (error: unknown) => {
          await writesSettled();
          throw error;
        });
        writes.shift();
      }
      const write = writeBatch(checked);
      // Never left unobserved: a later importBatch or the end awaits it.
      write.catch(() => {});
      writes.push(write);
    };
    let batch: ReadRow[] = [];
    for await (const row of readRows(spooled.file, format)) {
      batch.push(row);
      if (batch.length === ROWS_PER_BATCH) {
        await importBatch(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await importBatch(batch);
    const outcomes = await writesSettled();
    for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason;
    await this.#store.imports.addFailures(control.jobId, pending);
    lowestRows(reported);

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

  /** The id of the tenant of this code, or null when there is none the actor can see. */
  async #visibleTenantId(actor: Actor, code: string): Promise<string | null> {
    const tenant = await this.#store.tenants.findByCode(code);
    // A tenant the caller cannot see reads as one that does not exist.
    return tenant && canSeeTenant(actor, tenant.id) ? tenant.id : null;
  }
}

/**
 * A row as `checkMany` takes it; the rules of a row alone (tenant, role, password) first.
 * `tenants` holds the visible tenant id (or null) of each code the rows name.
 */
function creationOf(row: RowFields, tenants: ReadonlyMap<string, string | null>): UserCreation {
  const username = row.username ?? '';
  if (username === '') throw new GatehouseError('VALIDATION_FAILED', 'username is required');
  const code = row.tenant_code ?? '';
  if (code === '') throw new GatehouseError('VALIDATION_FAILED', 'tenant_code is required');
  const role = (row.role ?? '') === '' ? 'user' : row.role;
  if (!ROLES.includes(role as Role)) {
    throw new GatehouseError('VALIDATION_FAILED', `role must be one of ${ROLES.join(', ')}`);
  }
  const tenantId = tenants.get(code) ?? null;
  // The value is not quoted: in a file whose columns are out of place it may be a password.
  if (tenantId === null) throw new GatehouseError('NOT_FOUND', 'no tenant with the tenant_code given');
  const password = row.password || undefined;
  const passwordHash = row.password_hash || undefined;
  if (password === undefined && passwordHash === undefined) {
    throw new GatehouseError('VALIDATION_FAILED', 'a password is required: password, or password_hash');
  }
  if (password !== undefined && passwordHash !== undefined) {
    throw new GatehouseError('VALIDATION_FAILED', 'give password or password_hash, not both');
  }
  return {
    username,
    password,
    passwordHash,
    firstName: row.firstName || undefined,
    lastName: row.lastName || undefined,
    displayName: row.displayName || undefined,
    email: row.email || undefined,
    phone: row.phone || undefined,
    primaryTenantId: tenantId,
    tenancies: [{ tenantId, role: role as Role }],
  };
}

/** The rows of a spooled file, numbered as a person finds them: by line, or by array element. */
async function* readRows(file: string, format: ImportFormat): AsyncGenerator<ReadRow> {
  if (format === 'json') {
    for await (const element of jsonElements(file)) {
      yield { row: element.key + 1, fields: storable(objectRow(element.value)) };
    }
    return;
  }
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
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
    // A CSV line is UTF-8 decoded (no lone surrogates can come out of it) and has no escapes: a
    // NUL can only be there as it is, and one look at the line finds it.
    yield {
      row: lineNumber,
      fields:
        format === 'csv'
          ? line.includes('\0')
            ? 'the line holds a NUL character'
            : csvRow(line, header ?? [])
          : storable(jsonRow(line)),
    };
  }
}

/**
 * The row, or why it fails: a field holding a NUL or a broken surrogate pair fails its row before
 * any rule looks it up in the store (PostgreSQL refuses such text, and that failed the whole job).
 */
function storable(fields: RowFields | string): RowFields | string {
  if (typeof fields === 'string') return fields;
  for (const column of IMPORT_COLUMNS) {
    const value = fields[column];
    if (value !== undefined && isUnstorableText(value)) {
      return `${column} holds a NUL character or a broken surrogate pair`;
    }
  }
  return fields;
}

/** The elements of the top-level JSON array in `file`, parsed one at a time. */
function jsonElements(file: string): AsyncIterable<{ key: number; value: unknown }> {
  const source = createReadStream(file);
  const elements = streamArray.withParserAsStream();
  source.on('error', (error) => elements.destroy(error));
  return source.pipe(elements);
}

/** Cuts `failures` down to the REPORTED_FAILURES of the lowest rows, in row order. */
function lowestRows(failures: RowFailure[]): void {
  failures.sort((a, b) => a.row - b.row);
  failures.length = Math.min(failures.length, REPORTED_FAILURES);
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

/**
 * A reason must never echo the row's password or password hash, whatever rule produced it. Rules
 * quote the values they name in double quotes: a quoted value holding a secret is replaced whole
 * (masking only the match let a short password show through the gaps it left in the text, "The
 * pa***word must..."). A secret long enough not to be a piece of the rule's own words, found
 * outside quotes, replaces the whole reason.
 */
function withoutSecrets(reason: string, secrets: readonly (string | undefined)[]): string {
  const present = secrets.filter((secret): secret is string => secret !== undefined && secret !== '');
  const masked = reason.replace(/"[^"]*"/g, (quoted) =>
    present.some((secret) => quoted.includes(secret)) ? '"***"' : quoted,
  );
  return present.some((secret) => secret.length >= UNQUOTED_SECRET_MIN && masked.includes(secret))
    ? "refused by a rule whose reason would show the row's password"
    : masked;
}
const UNQUOTED_SECRET_MIN = 8;

function readHeader(line: string): (ImportColumn | undefined)[] {
  const fields = splitCsv(line) ?? [];
  return fields.map((name) =>
    IMPORT_COLUMNS.find((column) => column.toLowerCase() === name.trim().toLowerCase()),
  );
}

function csvRow(line: string, header: readonly (ImportColumn | undefined)[]): RowFields | string {
  const fields = splitCsv(line);
  if (!fields) return 'malformed CSV line (unbalanced quotes)';
  // A comma left unquoted in a password shifts every later field into the wrong column, where a
  // rule's reason would quote a piece of the password: the row is refused as it stands.
  if (fields.length !== header.length) {
    return `${fields.length} fields where the header has ${header.length} (a comma in a value must be quoted)`;
  }
  const row: RowFields = {};
  header.forEach((column, index) => {
    const value = fields[index];
    if (column && value !== undefined) row[column] = value;
  });
  return row;
}

function jsonRow(line: string): RowFields | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return 'not a JSON object';
  }
  return objectRow(parsed);
}

function objectRow(parsed: unknown): RowFields | string {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return 'not a JSON object';
  const row: RowFields = {};
  for (const column of IMPORT_COLUMNS) {
    const value = (parsed as Record<string, unknown>)[column];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') return `${column} must be a string`;
    row[column] = value;
  }
  return row;
}

/**
 * One CSV line (RFC 4180 quoting, no line breaks inside fields); undefined if quotes do not balance.
 * A quote opens quoting only at the start of a field; after the closing quote, the rest of the field
 * up to the next comma is kept as it is. Fields are cut out of the line whole, not built a character
 * at a time: a string grown by `+=` is a chain of pieces that every later look at it (the hash
 * format check of an import, say) first has to copy into one.
 */
export function splitCsv(line: string): string[] | undefined {
  const fields: string[] = [];
  let index = 0;
  for (;;) {
    let field = '';
    if (line.charCodeAt(index) === QUOTE) {
      index += 1;
      for (;;) {
        const close = line.indexOf('"', index);
        if (close === -1) return undefined;
        field += line.slice(index, close);
        index = close + 1;
        // "" inside quotes is one quote; a lone one ends the quoting.
        if (line.charCodeAt(index) !== QUOTE) break;
        field += '"';
        index += 1;
      }
    }
    const comma = line.indexOf(',', index);
    field += line.slice(index, comma === -1 ? line.length : comma);
    fields.push(field);
    if (comma === -1) return fields;
    index = comma + 1;
  }
}

const QUOTE = 0x22;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const BACKSLASH = 0x5c;
const LINE_FEED = 0x0a;
const CARRIAGE_RETURN = 0x0d;
/** JSON's structural bytes and blanks: what ends a literal (a number, true, false, null). */
const LITERAL_ENDS: ReadonlySet<number> = new Set([...'{}[],: \t\r\n'].map((c) => c.charCodeAt(0)));

/**
 * The longest line of a CSV or NDJSON import, and the longest string of a JSON one: a user's row
 * is a few hundred bytes, and the readers build each line (or string) whole, so one line of
 * hundreds of megabytes would exhaust the process's memory. Longer is refused, whole, while spooling.
 */
export const IMPORT_LINE_LIMIT = 64 * 1024;

/**
 * Passes bytes through while hashing them, counting lines that hold something, and refusing a
 * line (CSV, NDJSON), or a JSON string, literal or element of the array, longer than
 * IMPORT_LINE_LIMIT.
 */
class LineCounter extends Transform {
  lines = 0;
  #bytes = 0;
  #lineHasContent = false;
  #lineBytes = 0;
  #lineNumber = 1;
  /** The last chunk ended with a CR: an LF opening this one belongs to that line end. */
  #afterCarriageReturn = false;
  // JSON: whether the bytes seen end inside a string, right after a backslash in one, and how long
  // the string is so far.
  #inString = false;
  #escaped = false;
  #stringBytes = 0;
  #literalBytes = 0;
  // JSON: how deep in arrays and objects the bytes seen end (1 inside the top-level array), and
  // how long the element of that array being read is so far.
  #depth = 0;
  #elementBytes = 0;
  readonly #hash = createHash('sha256');
  readonly #limit: number;
  readonly #format: ImportFormat;

  constructor(limit: number, format: ImportFormat) {
    super();
    this.#limit = limit;
    this.#format = format;
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
    // Line end to line end (indexOf), looking into a line only until its first visible byte: a
    // 100,000-row upload is tens of megabytes, which a loop over every byte takes long to walk.
    // Lines end as the reader (readline) ends them: at LF, CR LF, or a CR alone (old Mac files).
    let start = 0;
    if (this.#afterCarriageReturn) {
      this.#afterCarriageReturn = false;
      if (chunk[0] === LINE_FEED) start = 1;
    }
    let carriageReturn = -2;
    for (;;) {
      const newline = chunk.indexOf(LINE_FEED, start);
      if (carriageReturn < start && carriageReturn !== -1)
        carriageReturn = chunk.indexOf(CARRIAGE_RETURN, start);
      const lineEnd =
        carriageReturn >= 0 && (newline < 0 || carriageReturn < newline) ? carriageReturn : newline;
      const end = lineEnd < 0 ? chunk.length : lineEnd;
      this.#lineBytes += end - start;
      if (this.#format !== 'json' && this.#lineBytes > IMPORT_LINE_LIMIT) {
        done(this.#tooLong(`line ${this.#lineNumber} is longer`));
        return;
      }
      for (let index = start; index < end && !this.#lineHasContent; index += 1) {
        const byte = chunk[index];
        if (byte !== 0x20 && byte !== 0x09) this.#lineHasContent = true;
      }
      if (lineEnd < 0) break;
      if (this.#lineHasContent) this.lines += 1;
      this.#lineHasContent = false;
      this.#lineBytes = 0;
      this.#lineNumber += 1;
      start = lineEnd + 1;
      if (lineEnd === carriageReturn) {
        // CR LF is one line end, also when the LF opens the next chunk.
        if (start === chunk.length) this.#afterCarriageReturn = true;
        else if (chunk[start] === LINE_FEED) start += 1;
      }
    }
    if (this.#format === 'json' && !this.#stringsWithinLimit(chunk)) {
      done(
        this.#tooLong(
          this.#elementBytes > IMPORT_LINE_LIMIT
            ? 'an element of the array is longer'
            : 'a string or literal is longer',
        ),
      );
      return;
    }
    done(null, chunk);
  }

  /** Follows the JSON strings through `chunk` (quotes and escapes, found with indexOf). */
  #stringsWithinLimit(chunk: Buffer): boolean {
    let index = 0;
    let nextBackslash = -2;
    while (index < chunk.length) {
      if (!this.#inString) {
        const open = chunk.indexOf(QUOTE, index);
        // Between strings: structure, blanks and literals (numbers, true...), of which no literal
        // may be long either (the parser builds a number whole too).
        if (!this.#literalsWithinLimit(chunk, index, open < 0 ? chunk.length : open)) return false;
        if (open < 0) return true;
        if (!this.#withinElement(1)) return false;
        this.#literalBytes = 0;
        this.#inString = true;
        this.#stringBytes = 0;
        index = open + 1;
        continue;
      }
      if (this.#escaped) {
        this.#escaped = false;
        this.#stringBytes += 1;
        if (!this.#withinElement(1)) return false;
        index += 1;
        continue;
      }
      if (nextBackslash < index && nextBackslash !== -1) nextBackslash = chunk.indexOf(BACKSLASH, index);
      const close = chunk.indexOf(QUOTE, index);
      const stop = nextBackslash >= 0 && (close < 0 || nextBackslash < close) ? nextBackslash : close;
      if (stop < 0) {
        this.#stringBytes += chunk.length - index;
        return this.#stringBytes <= IMPORT_LINE_LIMIT && this.#withinElement(chunk.length - index);
      }
      this.#stringBytes += stop - index;
      if (this.#stringBytes > IMPORT_LINE_LIMIT || !this.#withinElement(stop + 1 - index)) return false;
      if (stop === close) this.#inString = false;
      else this.#escaped = true;
      index = stop + 1;
    }
    return this.#stringBytes <= IMPORT_LINE_LIMIT || !this.#inString;
  }

  #literalsWithinLimit(chunk: Buffer, from: number, to: number): boolean {
    for (let index = from; index < to; index += 1) {
      const byte = chunk[index] ?? 0;
      if (byte === OPEN_BRACE || byte === OPEN_BRACKET) this.#depth += 1;
      if (!this.#withinElement(1)) return false;
      if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        this.#depth -= 1;
        // The element ended: the next starts from nothing.
        if (this.#depth <= 1) this.#elementBytes = 0;
      }
      if (LITERAL_ENDS.has(byte)) this.#literalBytes = 0;
      else if (++this.#literalBytes > IMPORT_LINE_LIMIT) return false;
    }
    return true;
  }

  /**
   * Counts `bytes` toward the array element being read, if any: an element is built whole by the
   * parser, at tens of bytes of memory a byte when it is made of many small parts (`{},{},…`),
   * so its length is bounded like a line's.
   */
  #withinElement(bytes: number): boolean {
    if (this.#depth < 2) return true;
    this.#elementBytes += bytes;
    return this.#elementBytes <= IMPORT_LINE_LIMIT;
  }

  #tooLong(what: string): GatehouseError {
    return new GatehouseError(
      'VALIDATION_FAILED',
      `${what} than ${IMPORT_LINE_LIMIT} bytes; no user's row needs that many, and the import refuses it whole`,
    );
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
