import type { Insertable, Kysely, Selectable, Updateable } from 'kysely';
import type { Database, RegionTable, ZoneTable } from '../schema.js';
import type { Page, PageRequest } from './list-query.js';

export type RegionRow = Selectable<RegionTable>;
export interface RegionWithZones extends RegionRow {
  readonly zones: string[];
}
export interface ZoneWithRegion extends Selectable<ZoneTable> {
  readonly region_name: string;
}
export type RegionSortKey = 'created' | 'name';
export type ZoneSortKey = 'created' | 'name' | 'region';

const REGION_SORT = { created: 'created_at', name: 'name' } as const;
const ZONE_SORT = { created: 'zones.created_at', name: 'zones.name', region: 'regions.name' } as const;

export function createCatalogRepository(db: Kysely<Database>) {
  const zoneNamesOf = async (regionIds: string[]): Promise<Map<string, string[]>> => {
    const byRegion = new Map<string, string[]>(regionIds.map((id) => [id, []]));
    if (regionIds.length === 0) return byRegion;
    const zones = await db
      .selectFrom('zones')
      .select(['region_id', 'name'])
      .where('region_id', 'in', regionIds)
      .orderBy('name')
      .execute();
    for (const zone of zones) byRegion.get(zone.region_id)?.push(zone.name);
    return byRegion;
  };
  const zonesWithRegion = () =>
    db
      .selectFrom('zones')
      .innerJoin('regions', 'regions.id', 'zones.region_id')
      .selectAll('zones')
      .select('regions.name as region_name');

  return {
    async insertRegion(row: Insertable<RegionTable>): Promise<void> {
      await db.insertInto('regions').values(row).execute();
    },
    async insertZone(row: Insertable<ZoneTable>): Promise<void> {
      await db.insertInto('zones').values(row).execute();
    },
    async findRegionByName(name: string): Promise<RegionWithZones | undefined> {
      const region = await db.selectFrom('regions').selectAll().where('name', '=', name).executeTakeFirst();
      if (!region) return undefined;
      return { ...region, zones: (await zoneNamesOf([region.id])).get(region.id) ?? [] };
    },
    async listRegions(page: PageRequest<RegionSortKey>): Promise<Page<RegionWithZones>> {
      const [rows, count] = await Promise.all([
        db
          .selectFrom('regions')
          .selectAll()
          .orderBy(REGION_SORT[page.sortBy], page.order)
          .orderBy('id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        db
          .selectFrom('regions')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .executeTakeFirstOrThrow(),
      ]);
      const zones = await zoneNamesOf(rows.map((r) => r.id));
      return { rows: rows.map((r) => ({ ...r, zones: zones.get(r.id) ?? [] })), total: Number(count.n) };
    },
    findZoneByName(name: string): Promise<ZoneWithRegion | undefined> {
      return zonesWithRegion().where('zones.name', '=', name).executeTakeFirst();
    },
    async listZones(
      page: PageRequest<ZoneSortKey>,
      filter: { regionName?: string | undefined },
    ): Promise<Page<ZoneWithRegion>> {
      let rowsQuery = zonesWithRegion();
      let countQuery = db
        .selectFrom('zones')
        .innerJoin('regions', 'regions.id', 'zones.region_id')
        .select((eb) => eb.fn.countAll<number>().as('n'));
      if (filter.regionName !== undefined) {
        rowsQuery = rowsQuery.where('regions.name', '=', filter.regionName);
        countQuery = countQuery.where('regions.name', '=', filter.regionName);
      }
      const [rows, count] = await Promise.all([
        rowsQuery
          .orderBy(ZONE_SORT[page.sortBy], page.order)
          .orderBy('zones.id', page.order)
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        countQuery.executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },
    async updateRegion(id: string, changes: Updateable<RegionTable>): Promise<void> {
      await db.updateTable('regions').set(changes).where('id', '=', id).execute();
    },
    /** True when a row went; a region that still has zones fails on the foreign key instead. */
    async deleteRegion(id: string): Promise<boolean> {
      const result = await db.deleteFrom('regions').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
    async updateZone(id: string, changes: Updateable<ZoneTable>): Promise<void> {
      await db.updateTable('zones').set(changes).where('id', '=', id).execute();
    },
    async deleteZone(id: string): Promise<boolean> {
      const result = await db.deleteFrom('zones').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
  };
}
