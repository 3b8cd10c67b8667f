import { GatehouseError } from '../errors.js';
import { isUniqueViolation, type Store } from '../store/connect.js';
import type { TenantRow } from '../store/repositories/tenants.js';
import type { Clock } from './clock.js';
import { newId } from './ids.js';

const TENANT_CODE = /^[a-z0-9_]{1,64}$/;

export class TenantService {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  async create(input: {
    code: string;
    name: string;
    description?: string | undefined;
    zuoraAccountName?: string | undefined;
    zuoraAccountNumber?: string | undefined;
  }): Promise<TenantRow> {
    if (!TENANT_CODE.test(input.code)) {
      throw new GatehouseError('VALIDATION_FAILED', 'code must be 1-64 lower-case letters, digits or _');
    }
    const name = input.name.trim();
    if (name.length < 1 || name.length > 255) {
      throw new GatehouseError('VALIDATION_FAILED', 'name must be 1-255 characters');
    }
    const now = this.#clock.now();
    const row: TenantRow = {
      id: newId(now),
      code: input.code,
      name,
      description: input.description ?? '',
      zuora_account_name: input.zuoraAccountName ?? '',
      zuora_account_number: input.zuoraAccountNumber ?? '',
      created_at: now,
      updated_at: now,
    };
    try {
      await this.#store.tenants.insert(row);
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new GatehouseError('ALREADY_EXISTS', `a tenant with code "${input.code}" already exists`);
      }
      throw error;
    }
    return row;
  }
}
