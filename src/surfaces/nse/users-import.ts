import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Core } from '../../core/index.js';
import { IMPORT_BODY_LIMIT, IMPORT_COLUMNS, type ImportFormat } from '../../core/user-import.js';
import { GatehouseError } from '../../errors.js';
import { authOf } from '../auth-context.js';
import { requestMeta } from '../request-meta.js';
import { nseAuthenticator } from './authenticate.js';
import { NSE_ERRORS, NSE_SECURITY, RecordEnvelope, single } from './envelope.js';
import { JobRecord } from './jobs.js';

const FORMATS: Record<string, ImportFormat> = {
  'text/csv': 'csv',
  'application/x-ndjson': 'ndjson',
  'application/json': 'json',
};

/**
 * `POST /users/import`: bulk user creation as a job. The body is a stream, spooled to disk by the
 * core, so this plugin hands the raw request stream through instead of parsing it.
 */
export const userImportRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);

  // This plugin's routes only: here a JSON body is an array too large to parse whole.
  app.removeContentTypeParser('application/json');
  // Every other media type too, so that the handler's refusal names the formats this route takes.
  app.addContentTypeParser([...Object.keys(FORMATS), '*'], (_request, payload, done) => done(null, payload));

  app.post(
    '/users/import',
    {
      onRequest: authenticate,
      bodyLimit: IMPORT_BODY_LIMIT,
      schema: {
        tags: ['NSE users'],
        summary: `Import users from text/csv (header row; columns ${IMPORT_COLUMNS.join(', ')}), application/json (an array of objects with those fields) or application/x-ndjson (one such object per line): answers 202 with the job; an Idempotency-Key header makes retries return the first job`,
        security: NSE_SECURITY,
        consumes: Object.keys(FORMATS),
        response: { 202: RecordEnvelope(JobRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const mediaType = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
      const format = FORMATS[mediaType];
      if (format === undefined || !(request.body instanceof Readable)) {
        if (request.body instanceof Readable) request.body.resume();
        throw new GatehouseError(
          'UNSUPPORTED_MEDIA_TYPE',
          'send the users as text/csv, application/json or application/x-ndjson',
        );
      }
      const key = request.headers['idempotency-key'];
      const job = await core.userImport.submit(
        authOf(request),
        request.body,
        format,
        typeof key === 'string' ? key : undefined,
        requestMeta(request),
      );
      reply.code(202);
      return single(job, 'Okay. Request accepted.', 202);
    },
  );
};
