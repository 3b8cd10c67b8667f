import type { Migration } from 'kysely';
import * as initial from './0001-initial.js';
import * as administration from './0002-administration.js';
import * as jobLeases from './0003-job-leases.js';
import * as sessionTokenIndex from './0004-session-token-index.js';
import * as importFailures from './0005-import-failures.js';
import * as tokenRotation from './0006-token-rotation.js';
import * as loginThrottle from './0007-login-throttle.js';
import * as liveSessionsIndex from './0008-live-sessions-index.js';
import * as cacheInvalidations from './0009-cache-invalidations.js';
import * as apiTokenCreator from './0010-api-token-creator.js';
import * as nodePasswordChanged from './0011-node-password-changed.js';
import * as apiTokenAuthority from './0012-api-token-authority.js';
import * as apiTokenMakerIndex from './0013-api-token-maker-index.js';

/** Every migration in order. Names sort in the order they run. */
export const migrations: Record<string, Migration> = {
  '0001-initial': initial,
  '0002-administration': administration,
  '0003-job-leases': jobLeases,
  '0004-session-token-index': sessionTokenIndex,
  '0005-import-failures': importFailures,
  '0006-token-rotation': tokenRotation,
  '0007-login-throttle': loginThrottle,
  '0008-live-sessions-index': liveSessionsIndex,
  '0009-cache-invalidations': cacheInvalidations,
  '0010-api-token-creator': apiTokenCreator,
  '0011-node-password-changed': nodePasswordChanged,
  '0012-api-token-authority': apiTokenAuthority,
  '0013-api-token-maker-index': apiTokenMakerIndex,
};
