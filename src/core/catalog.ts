import { GatehouseError } from '../errors.js';
import { changeTags } from '../store/change-feed.js';
import { isForeignKeyViolation, isUniqueViolation, type Store } from '../store/connect.js';
import type {
  RegionSortKey,
  RegionWithZones,
  ZoneSortKey,
  ZoneWithRegion,
} from '../store/repositories/catalog.js';
import type { AuditService } from './audit.js';
import { actorOf, requireRoot } from './authorization.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';
import type { Listed, ListQuery } from './listing.js';
import type { AuthContext, Principal, RequestMeta } from './sessions.js';
import type { TaggedCache } from './tagged-cache.js';

export type { RegionSortKey, ZoneSortKey } from '../store/repositories/catalog.js';

export interface RegionView {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly zones: string[];
  readonly created: number;
  /** Who created it; null when the system did (the CLI) or that user is gone. */
  readonly userId: string | null;
}

export interface ZoneView {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly region: string;
  readonly created: number;
}

/**
 * Who asks for a change over HTTP. Regions and zones are global, so only root changes them.
 * The CLI passes none: it is the system acting, and the audit log says so.
 */
export interface CatalogRequester {
  readonly auth: AuthContext;
  readonly meta: RequestMeta;
}

const CATALOG_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_DESCRIPTION = 1024;
/** A refusal names the blocking zones, but a region with hundreds of them must not make a huge error. */
const LISTED_ZONES = 10;

const regionView = (r: RegionWithZones): RegionView => ({
  id: r.id,
  name: r.name,
  description: r.description,
  zones: r.zones,
  created: r.created_at,
  userId: r.user_id,
});
const zoneView = (z: ZoneWithRegion): ZoneView => ({
  id: z.id,
  name: z.name,
  description: z.description,
  region: z.region_name,
  created: z.created_at,
});

/** A page of the catalog as listed, kept in the catalog cache. */
export type CatalogListing =
  | { readonly kind: 'regions'; readonly listed: Listed<RegionView, RegionSortKey> }
  | { readonly kind: 'zones'; readonly listed: Listed<ZoneView, ZoneSortKey> };

/**
 * Regions (sites) and zones (clusters inside a region). Anyone signed in reads them; root changes
 * them. Every consumer lists them often and they change rarely: the lists are cached per process
 * and dropped by any region or zone change (heard by every process within a second).
 */
export class CatalogService {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #audit: AuditService;
  readonly #cache: TaggedCache<CatalogListing> | undefined;

  constructor(store: Store, clock: Clock, audit: AuditService, cache?: TaggedCache<CatalogListing>) {
    this.#store = store;
    this.#clock = clock;
    this.#audit = audit;
    this.#cache = cache;
  }

  async createRegion(
    input: { name: string; description?: string | undefined },
    by?: CatalogRequester,
  ): Promise<RegionView> {
    const actor = await this.#mayChange(by);
    checkName('name', 'region', input.name);
    const description = checkDescription(input.description ?? '');
    const now = this.#clock.now();
    const row = {
      id: newId(now),
      name: input.name,
      description,
      user_id: actor?.kind === 'user' ? actor.id : null,
      created_at: now,
      updated_at: now,
    };
    try {
      await this.#store.transaction(async (tx) => {
        await tx.catalog.insertRegion(row);
        await this.#audit.record(
          { action: 'region.create', actor, target: regionTarget(row), meta: by?.meta, outcome: 'success' },
          tx,
        );
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw regionExists(input.name);
      throw error;
    }
    return regionView({ ...row, zones: [] });
  }

  /** Renames and/or describes a region; its zones follow it (they point at its id). */
  async updateRegion(
    name: string,
    changes: { name?: string | undefined; description?: string | undefined },
    by?: CatalogRequester,
  ): Promise<RegionView> {
    const actor = await this.#mayChange(by);
    if (changes.name !== undefined) checkName('name', 'region', changes.name);
    const description = changes.description === undefined ? undefined : checkDescription(changes.description);
    try {
      return await this.#store.transaction(async (tx) => {
        const region = await tx.catalog.findRegionByName(name);
        if (!region) throw noRegion(name);
        const updated = {
          ...region,
          name: changes.name ?? region.name,
          description: description ?? region.description,
          updated_at: this.#clock.now(),
        };
        await tx.catalog.updateRegion(region.id, {
          name: updated.name,
          description: updated.description,
          updated_at: updated.updated_at,
        });
        await this.#audit.record(
          {
            action: 'region.update',
            actor,
            target: regionTarget(updated),
            meta: by?.meta,
            outcome: 'success',
          },
          tx,
        );
        return regionView(updated);
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw regionExists(changes.name ?? name);
      throw error;
    }
  }

  /** The reference: all zones within a region must be deleted first. */
  async deleteRegion(name: string, by?: CatalogRequester): Promise<void> {
    const actor = await this.#mayChange(by);
    try {
      await this.#store.transaction(async (tx) => {
        const region = await tx.catalog.findRegionByName(name);
        if (!region) throw noRegion(name);
        if (region.zones.length > 0) throw regionHasZones(region.name, region.zones);
        if (!(await tx.catalog.deleteRegion(region.id))) throw noRegion(name);
        await this.#audit.record(
          {
            action: 'region.delete',
            actor,
            target: regionTarget(region),
            meta: by?.meta,
            outcome: 'success',
          },
          tx,
        );
      });
    } catch (error) {
      // A zone created by someone else between the check and the delete.
      if (isForeignKeyViolation(error)) throw regionHasZones(name, []);
      throw error;
    }
  }

  async createZone(
    input: { name: string; regionName: string; description?: string | undefined },
    by?: CatalogRequester,
  ): Promise<ZoneView> {
    const actor = await this.#mayChange(by);
    checkName('name', 'zone', input.name);
    const description = checkDescription(input.description ?? '');
    const now = this.#clock.now();
    try {
      return await this.#store.transaction(async (tx) => {
        const region = await tx.catalog.findRegionByName(input.regionName);
        if (!region) throw noRegion(input.regionName);
        const row = {
          id: newId(now),
          name: input.name,
          description,
          region_id: region.id,
          created_at: now,
          updated_at: now,
        };
        await tx.catalog.insertZone(row);
        await this.#audit.record(
          { action: 'zone.create', actor, target: zoneTarget(row), meta: by?.meta, outcome: 'success' },
          tx,
        );
        return zoneView({ ...row, region_name: region.name });
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw zoneExists(input.name);
      // The region was deleted between the look-up and the insert.
      if (isForeignKeyViolation(error)) throw noRegion(input.regionName);
      throw error;
    }
  }

  /** Renames, describes and/or moves a zone to another region. */
  async updateZone(
    name: string,
    changes: { name?: string | undefined; description?: string | undefined; regionName?: string | undefined },
    by?: CatalogRequester,
  ): Promise<ZoneView> {
    const actor = await this.#mayChange(by);
    if (changes.name !== undefined) checkName('name', 'zone', changes.name);
    const description = changes.description === undefined ? undefined : checkDescription(changes.description);
    try {
      return await this.#store.transaction(async (tx) => {
        const zone = await tx.catalog.findZoneByName(name);
        if (!zone) throw noZone(name);
        let region = { id: zone.region_id, name: zone.region_name };
        if (changes.regionName !== undefined && changes.regionName !== zone.region_name) {
          const target = await tx.catalog.findRegionByName(changes.regionName);
          if (!target) throw noRegion(changes.regionName);
          region = target;
        }
        const updated = {
          ...zone,
          name: changes.name ?? zone.name,
          description: description ?? zone.description,
          region_id: region.id,
          region_name: region.name,
          updated_at: this.#clock.now(),
        };
        await tx.catalog.updateZone(zone.id, {
          name: updated.name,
          description: updated.description,
          region_id: updated.region_id,
          updated_at: updated.updated_at,
        });
        await this.#audit.record(
          { action: 'zone.update', actor, target: zoneTarget(updated), meta: by?.meta, outcome: 'success' },
          tx,
        );
        return zoneView(updated);
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw zoneExists(changes.name ?? name);
      if (isForeignKeyViolation(error)) throw noRegion(changes.regionName ?? '');
      throw error;
    }
  }

  /**
   * The reference refuses to delete a zone that still holds storage resources (412). Gatehouse
   * keeps no storage resources, so nothing here makes a zone "in use": a zone always deletes.
   */
  async deleteZone(name: string, by?: CatalogRequester): Promise<void> {
    const actor = await this.#mayChange(by);
    await this.#store.transaction(async (tx) => {
      const zone = await tx.catalog.findZoneByName(name);
      if (!zone || !(await tx.catalog.deleteZone(zone.id))) throw noZone(name);
      await this.#audit.record(
        { action: 'zone.delete', actor, target: zoneTarget(zone), meta: by?.meta, outcome: 'success' },
        tx,
      );
    });
  }

  async region(name: string): Promise<RegionView> {
    const region = await this.#store.catalog.findRegionByName(name);
    if (!region) throw noRegion(name);
    return regionView(region);
  }

  async listRegions(query: ListQuery<RegionSortKey>): Promise<Listed<RegionView, RegionSortKey>> {
    const listing = await this.#cached(listingKey('regions', query, undefined), async () => {
      const page = await this.#store.catalog.listRegions(query);
      return { kind: 'regions', listed: { ...query, records: page.rows.map(regionView), total: page.total } };
    });
    if (listing.kind !== 'regions') throw new Error('catalog cache: a zone listing under a region key');
    return listing.listed;
  }

  async zone(name: string): Promise<ZoneView> {
    const zone = await this.#store.catalog.findZoneByName(name);
    if (!zone) throw noZone(name);
    return zoneView(zone);
  }

  async listZones(
    query: ListQuery<ZoneSortKey>,
    filter: { region?: string | undefined },
  ): Promise<Listed<ZoneView, ZoneSortKey>> {
    const listing = await this.#cached(listingKey('zones', query, filter.region), async () => {
      const page = await this.#store.catalog.listZones(query, { regionName: filter.region });
      return { kind: 'zones', listed: { ...query, records: page.rows.map(zoneView), total: page.total } };
    });
    if (listing.kind !== 'zones') throw new Error('catalog cache: a region listing under a zone key');
    return listing.listed;
  }

  #cached(key: string, read: () => Promise<CatalogListing>): Promise<CatalogListing> {
    return this.#cache ? this.#cache.read(key, [changeTags.catalog], read) : read();
  }

  /** Root only over HTTP; undefined (the system) for the CLI. Checked before anything else is told. */
  async #mayChange(by: CatalogRequester | undefined): Promise<Principal | undefined> {
    if (!by) return undefined;
    const actor = await actorOf(this.#store, by.auth);
    requireRoot(actor);
    return actor.principal;
  }
}

/**
 * A listing's cache key: everything it depends on (its kind, the page and sort asked for, the
 * region filter). Built by hand, not with JSON.stringify: it is computed on every listing read. The
 * filter is quoted as JSON, so no region name can make two different listings share a key.
 */
function listingKey(kind: 'regions' | 'zones', query: ListQuery<string>, region: string | undefined): string {
  const filter = region === undefined ? '' : JSON.stringify(region);
  return `${kind} ${query.offset} ${query.limit} ${query.sortBy} ${query.order} ${filter}`;
}

const regionTarget = (r: { id: string; name: string }) => ({ type: 'region', id: r.id, name: r.name });
const zoneTarget = (z: { id: string; name: string }) => ({ type: 'zone', id: z.id, name: z.name });

const noRegion = (name: string) => new GatehouseError('NOT_FOUND', `no region named "${name.slice(0, 64)}"`);
const noZone = (name: string) => new GatehouseError('NOT_FOUND', `no zone named "${name.slice(0, 64)}"`);
const regionExists = (name: string) =>
  new GatehouseError('ALREADY_EXISTS', `a region named "${name}" already exists`);
const zoneExists = (name: string) =>
  new GatehouseError('ALREADY_EXISTS', `a zone named "${name}" already exists`);

function regionHasZones(region: string, zones: readonly string[]): GatehouseError {
  const shown = zones.slice(0, LISTED_ZONES).join(', ');
  const more = zones.length > LISTED_ZONES ? ` and ${zones.length - LISTED_ZONES} more` : '';
  const which = zones.length > 0 ? `: ${shown}${more}` : '';
  return new GatehouseError(
    'PRECONDITION_FAILED',
    `region "${region.slice(0, 64)}" still has zones${which}; delete them first`,
  );
}

function checkName(field: string, kind: string, name: string): void {
  if (!CATALOG_NAME.test(name)) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      `${field}: a ${kind} name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

function checkDescription(description: string): string {
  if (description.length > MAX_DESCRIPTION) {
    throw new GatehouseError(
      'VALIDATION_FAILED',
      `description must be at most ${MAX_DESCRIPTION} characters`,
    );
  }
  return description;
}
