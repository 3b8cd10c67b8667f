import type { Kysely, Selectable } from 'kysely';
import type { Database, ImportRequestTable } from '../schema.js';

export type ImportRequestRow = Selectable<ImportRequestTable>;

export function createImportRepository(db: Kysely<Database>) {
  return {
    async addFailures(jobId: string, failures: readonly { row: number; reason: string }[]): Promise<void> {
      if (failures.length === 0) return;
      await db
        .insertInto('import_failures')
        .values(failures.map((f) => ({ job_id: jobId, row_number: f.row, reason: f.reason })))
        .execute();
    },
    /** The first `limit` failures of a job, in row order. */
    failures(jobId: string, limit: number): Promise<{ row_number: number; reason: string }[]> {
      return db
        .selectFrom('import_failures')
        .select(['row_number', 'reason'])
        .where('job_id', '=', jobId)
        .orderBy('row_number', 'asc')
        .limit(limit)
        .execute();
    },
    findRequest(userId: string, key: string): Promise<ImportRequestRow | undefined> {
      return db
        .selectFrom('import_requests')
        .selectAll()
        .where('user_id', '=', userId)
        .where('idempotency_key', '=', key)
        .executeTakeFirst();
    },
    async addRequest(row: ImportRequestRow): Promise<void> {
      await db.insertInto('import_requests').values(row).execute();
    },
    /** Points an Idempotency-Key at the job that runs its request again, if it still names `fromJobId`. */
    async moveRequest(userId: string, key: string, fromJobId: string, toJobId: string): Promise<boolean> {
      const result = await db
        .updateTable('import_requests')
        .set({ job_id: toJobId })
        .where('user_id', '=', userId)
        .where('idempotency_key', '=', key)
        .where('job_id', '=', fromJobId)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    /** The failed rows and Idempotency-Keys of these jobs, deleted with the jobs themselves. */
    async deleteOfJobs(jobIds: readonly string[]): Promise<void> {
      if (jobIds.length === 0) return;
      await db.deleteFrom('import_failures').where('job_id', 'in', jobIds).execute();
      await db.deleteFrom('import_requests').where('job_id', 'in', jobIds).execute();
    },
  };
}
