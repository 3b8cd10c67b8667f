import type { Kysely } from 'kysely';
import type { Dialect } from '../connect.js';
import type { Database } from '../schema.js';
import { createApiTokenRepository } from './api-tokens.js';
import { createAuditEventRepository } from './audit-events.js';
import { createCatalogRepository } from './catalog.js';
import { createImportRepository } from './imports.js';
import { createJobRepository } from './jobs.js';
import { createLoginThrottleRepository } from './login-throttle.js';
import { createNodeRepository } from './nodes.js';
import { createRbacRepository } from './rbac.js';
import { createSessionRepository } from './sessions.js';
import { createSigningKeyRepository } from './signing-keys.js';
import { createSubtenantRepository } from './subtenants.js';
import { createTenantRepository } from './tenants.js';
import { createUserRepository } from './users.js';

/** The storage facade: the only code that writes SQL. Core sees these methods, never Kysely. */
export function createRepositories(db: Kysely<Database>, dialect: Dialect) {
  return {
    tenants: createTenantRepository(db),
    users: createUserRepository(db, dialect),
    rbac: createRbacRepository(db),
    nodes: createNodeRepository(db),
    sessions: createSessionRepository(db, dialect),
    apiTokens: createApiTokenRepository(db, dialect),
    signingKeys: createSigningKeyRepository(db),
    catalog: createCatalogRepository(db),
    jobs: createJobRepository(db),
    auditEvents: createAuditEventRepository(db, dialect),
    subtenants: createSubtenantRepository(db),
    imports: createImportRepository(db),
    loginThrottle: createLoginThrottleRepository(db, dialect),
  };
}

export type Repositories = ReturnType<typeof createRepositories>;
