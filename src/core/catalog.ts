import { GatehouseError } from '../errors.js';
import { isUniqueViolation, type Store } from '../store/connect.js';
import type {
  RegionSortKey,
  RegionWithZones,
  ZoneSortKey,
  ZoneWithRegion,
} from '../store/repositories/catalog.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import type { Listed, ListQuery } from './listing.js';

export type { RegionSortKey, ZoneSortKey } from '../store/repositories/catalog.js';

export interface RegionView {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly zones: string[];
  readonly created: number;
}

export interface ZoneView {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly region: string;
  readonly created: number;
}

const CATALOG_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const regionView = (r: RegionWithZones): RegionView => ({
  id: r.id,
  name: r.name,
  description: r.description,
  zones: r.zones,
  created: r.created_at,
});
const zoneView = (z: ZoneWithRegion): ZoneView => ({
  id: z.id,
  name: z.name,
  description: z.description,
  region: z.region_name,
  created: z.created_at,
});

/** Regions (sites) and zones (clusters inside a region). */
export class CatalogService {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  async createRegion(input: { name: string; description?: string | undefined }): Promise<RegionView> {
    checkName('region', input.name);
    const now = this.#clock.now();
    const row = {
      id: newId(now),
      name: input.name,
      description: input.description ?? '',
      user_id: null,
      created_at: now,
      updated_at: now,
    };
    try {
      await this.#store.catalog.insertRegion(row);
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GatehouseError('ALREADY_EXISTS', `a region named "${input.name}" already exists`);
      throw error;
    }
    return regionView({ ...row, zones: [] });
  }

  async createZone(input: {
    name: string;
    regionName: string;
    description?: string | undefined;
  }): Promise<ZoneView> {
    checkName('zone', input.name);
    const region = await this.#store.catalog.findRegionByName(input.regionName);
    if (!region) throw new GatehouseError('NOT_FOUND', `no region named "${input.regionName}"`);
    const now = this.#clock.now();
    const row = {
      id: newId(now),
      name: input.name,
      description: input.description ?? '',
      region_id: region.id,
      created_at: now,
      updated_at: now,
    };
    try {
      await this.#store.catalog.insertZone(row);
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GatehouseError('ALREADY_EXISTS', `a zone named "${input.name}" already exists`);
      throw error;
    }
    return zoneView({ ...row, region_name: region.name });
  }

  async region(name: string): Promise<RegionView> {
    const region = await this.#store.catalog.findRegionByName(name);
    if (!region) throw new GatehouseError('NOT_FOUND', `no region named "${name.slice(0, 64)}"`);
    return regionView(region);
  }

  async listRegions(query: ListQuery<RegionSortKey>): Promise<Listed<RegionView, RegionSortKey>> {
    const page = await this.#store.catalog.listRegions(query);
    return { ...query, records: page.rows.map(regionView), total: page.total };
  }

  async zone(name: string): Promise<ZoneView> {
    const zone = await this.#store.catalog.findZoneByName(name);
    if (!zone) throw new GatehouseError('NOT_FOUND', `no zone named "${name.slice(0, 64)}"`);
    return zoneView(zone);
  }

  async listZones(
    query: ListQuery<ZoneSortKey>,
    filter: { region?: string | undefined },
  ): Promise<Listed<ZoneView, ZoneSortKey>> {
    const page = await this.#store.catalog.listZones(query, { regionName: filter.region });
    return { ...query, records: page.rows.map(zoneView), total: page.total };
  }
}

function checkName(kind: string, name: string): void {
  if (!CATALOG_NAME.test(name)) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      `${kind} name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}
