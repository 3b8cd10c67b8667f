import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { RegionSortKey, ZoneSortKey } from '../../core/catalog.js';
import type { Core } from '../../core/index.js';
import { GatehouseError } from '../../errors.js';
import { nseAuthenticator } from './authenticate.js';
import {
  ListEnvelope,
  listed,
  listQuerySchema,
  NSE_ERRORS,
  NSE_SECURITY,
  RecordEnvelope,
  single,
  toListQuery,
} from './envelope.js';

export const RegionRecord = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  zones: Type.Array(Type.String()),
});

// Records carry `region` although create takes `region_name`: the reference's shape.
export const ZoneRecord = Type.Object({
  id: Type.String(),
  name: Type.String(),
  description: Type.String(),
  region: Type.String(),
});

export const REGION_SORT: readonly RegionSortKey[] = ['created', 'name'];
export const ZONE_SORT: readonly ZoneSortKey[] = ['created', 'name', 'region'];
export const NameParam = Type.Object({ name: Type.String({ minLength: 1, maxLength: 255 }) });

export const region = (r: { id: string; name: string; description: string; zones: string[] }) => ({
  id: r.id,
  name: r.name,
  description: r.description,
  zones: r.zones,
});
export const zone = (z: { id: string; name: string; description: string; region: string }) => ({
  id: z.id,
  name: z.name,
  description: z.description,
  region: z.region,
});

/**
 * The catalog reads, at the consumer paths (`/auth/regions`, `/auth/zones`) and the
 * administration paths (`/regions`, `/zones`): the two references document both, with the same records.
 */
export const catalogRoutes: FastifyPluginAsyncTypebox<{ core: Core }> = async (app, { core }) => {
  const authenticate = nseAuthenticator(core);

  for (const base of ['/auth', ''] as const) {
    app.get(
      `${base}/regions`,
      {
        onRequest: authenticate,
        schema: {
          tags: ['NSE catalog'],
          summary: 'List regions',
          security: NSE_SECURITY,
          querystring: listQuerySchema(REGION_SORT),
          response: { 200: ListEnvelope(RegionRecord), ...NSE_ERRORS },
        },
      },
      async (request) => {
        const list = await core.catalog.listRegions(toListQuery(request.query));
        return listed({ ...list, records: list.records.map(region) });
      },
    );

    app.get(
      `${base}/regions/:name`,
      {
        onRequest: authenticate,
        schema: {
          tags: ['NSE catalog'],
          summary: 'Get a region by name',
          security: NSE_SECURITY,
          params: NameParam,
          response: { 200: RecordEnvelope(RegionRecord), ...NSE_ERRORS },
        },
      },
      async (request) => single(region(await core.catalog.region(request.params.name))),
    );

    app.get(
      `${base}/zones`,
      {
        onRequest: authenticate,
        schema: {
          tags: ['NSE catalog'],
          summary: 'List zones, optionally of one region',
          security: NSE_SECURITY,
          querystring: listQuerySchema(ZONE_SORT, {
            region: Type.Optional(
              Type.String({ minLength: 1, maxLength: 255, description: 'Only zones of this region' }),
            ),
            // The name zone create takes, and so a client may filter by it.
            region_name: Type.Optional(
              Type.String({ minLength: 1, maxLength: 255, description: 'The same as region' }),
            ),
          }),
          response: { 200: ListEnvelope(ZoneRecord), ...NSE_ERRORS },
        },
      },
      async (request) => {
        const { region: byRecordName, region_name: byCreateName } = request.query;
        if (byRecordName !== undefined && byCreateName !== undefined && byRecordName !== byCreateName) {
          throw new GatehouseError(
            'VALIDATION_FAILED',
            'querystring/region and region_name name different regions',
          );
        }
        const list = await core.catalog.listZones(toListQuery(request.query), {
          region: byRecordName ?? byCreateName,
        });
        return listed({ ...list, records: list.records.map(zone) });
      },
    );

    app.get(
      `${base}/zones/:name`,
      {
        onRequest: authenticate,
        schema: {
          tags: ['NSE catalog'],
          summary: 'Get a zone by name',
          security: NSE_SECURITY,
          params: NameParam,
          response: { 200: RecordEnvelope(ZoneRecord), ...NSE_ERRORS },
        },
      },
      async (request) => single(zone(await core.catalog.zone(request.params.name))),
    );
  }
};
