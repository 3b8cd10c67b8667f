import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { CatalogRequester, RegionView } from '../../core/catalog.js';
import type { Core } from '../../core/index.js';
import { authOf } from '../auth-context.js';
import { requestMeta } from '../request-meta.js';
import { nseAuthenticator } from './authenticate.js';
import {
  NameParam,
  RegionRecord,
  region as regionRecord,
  ZoneRecord,
  zone as zoneRecord,
} from './catalog.js';
import { NSE_ERRORS, NSE_SECURITY, RecordEnvelope, single } from './envelope.js';

/**
 * The reference's create answer: `Description` (capital D), `user_id`, `created`, `tags`. Clients
 * that read the other region answers look for `description` and `zones`, so those are there too.
 */
const CreatedRegionRecord = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  Description: Type.String({ description: 'Same as description: the reference spells it so here' }),
  user_id: Type.String({ description: 'The creating user' }),
  created: Type.String({ description: 'ISO 8601' }),
  tags: Type.Null(),
  zones: Type.Array(Type.String()),
});

const NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit";
const CatalogName = (description: string) =>
  Type.String({ maxLength: 255, description: `${description}: ${NAME_RULE}` });
const Description = (description: string) => Type.String({ maxLength: 1024, description });

const RegionCreateBody = Type.Object({
  name: CatalogName('Region name'),
  description: Type.Optional(Description('Region description')),
});
const RegionUpdateBody = Type.Object({
  name: Type.Optional(CatalogName('New region name; its zones follow it')),
  description: Type.Optional(Description('New description')),
});
// The reference requires all three on create.
const ZoneCreateBody = Type.Object({
  name: CatalogName('Zone name'),
  description: Description('Zone description'),
  region_name: Type.String({ maxLength: 255, description: 'The existing region the zone belongs to' }),
});
const ZoneUpdateBody = Type.Object({
  name: Type.Optional(CatalogName('New zone name')),
  description: Type.Optional(Description('New description')),
  region_name: Type.Optional(
    Type.String({ maxLength: 255, description: 'Move the zone to this existing region' }),
  ),
});

const NoContent = Type.Unsafe<undefined>({ description: 'Deleted' });

const createdRegion = (r: RegionView) => ({
  ...regionRecord(r),
  Description: r.description,
  user_id: r.userId ?? '',
  created: new Date(r.created).toISOString(),
  tags: null,
});

const requester = (request: FastifyRequest): CatalogRequester => ({
  auth: authOf(request),
  meta: requestMeta(request),
});

/** `/regions`, `/zones` writes: only root changes the catalog (the reads are in catalog.ts). */
export const catalogAdminRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);
  const tags = ['NSE catalog administration'];

  app.post(
    '/regions',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Create a region (root only)',
        security: NSE_SECURITY,
        body: RegionCreateBody,
        response: { 201: RecordEnvelope(CreatedRegionRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const created = await core.catalog.createRegion(
        { name: request.body.name, description: request.body.description },
        requester(request),
      );
      reply.code(201);
      return single(createdRegion(created), 'Okay. New resource created.', 201);
    },
  );

  app.put(
    '/regions/:name',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Rename a region or change its description (root only)',
        security: NSE_SECURITY,
        params: NameParam,
        body: RegionUpdateBody,
        response: { 200: RecordEnvelope(RegionRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      single(
        regionRecord(
          await core.catalog.updateRegion(
            request.params.name,
            { name: request.body.name, description: request.body.description },
            requester(request),
          ),
        ),
      ),
  );

  app.delete(
    '/regions/:name',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Delete a region that has no zones (root only; 412 while it has zones)',
        security: NSE_SECURITY,
        params: NameParam,
        response: { 204: NoContent, ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await core.catalog.deleteRegion(request.params.name, requester(request));
      return reply.code(204).send(undefined);
    },
  );

  app.post(
    '/zones',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Create a zone in an existing region (root only)',
        security: NSE_SECURITY,
        body: ZoneCreateBody,
        response: { 201: RecordEnvelope(ZoneRecord), ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      const created = await core.catalog.createZone(
        {
          name: request.body.name,
          description: request.body.description,
          regionName: request.body.region_name,
        },
        requester(request),
      );
      reply.code(201);
      return single(zoneRecord(created), 'Okay. New resource created.', 201);
    },
  );

  app.put(
    '/zones/:name',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Rename a zone, change its description or move it to another region (root only)',
        security: NSE_SECURITY,
        params: NameParam,
        body: ZoneUpdateBody,
        response: { 200: RecordEnvelope(ZoneRecord), ...NSE_ERRORS },
      },
    },
    async (request) =>
      single(
        zoneRecord(
          await core.catalog.updateZone(
            request.params.name,
            {
              name: request.body.name,
              description: request.body.description,
              regionName: request.body.region_name,
            },
            requester(request),
          ),
        ),
      ),
  );

  app.delete(
    '/zones/:name',
    {
      onRequest: authenticate,
      schema: {
        tags,
        summary: 'Delete a zone (root only)',
        security: NSE_SECURITY,
        params: NameParam,
        response: { 204: NoContent, ...NSE_ERRORS },
      },
    },
    async (request, reply) => {
      await core.catalog.deleteZone(request.params.name, requester(request));
      return reply.code(204).send(undefined);
    },
  );
};
