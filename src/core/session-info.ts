import type { Config } from '../config.js';
import { changeTags } from '../store/change-feed.js';
import type { Store } from '../store/connect.js';
import type { UserRow } from '../store/repositories/users.js';
import type { Clock } from './clock.js';
import type { RbacService } from './rbac.js';
import type { AuthContext } from './sessions.js';
import type { TaggedCache } from './tagged-cache.js';
import { ENDPOINTS_AUDIENCES, type TokenService } from './tokens.js';

export interface UiSettings {
  readonly language: string;
  readonly uiTimeZone: string;
  readonly uiConsoleMode: string;
  readonly pageSize: number;
  readonly timeFormat: number;
  readonly infoTourEnabled: boolean;
}

export interface EndpointsToken {
  readonly token: string | null;
  readonly warning: string | null;
}

/** Everything a Storware SessionInfoResponse carries, surface-neutral. */
export interface SessionInfo {
  readonly requester: { readonly guid: string; readonly name: string };
  readonly settings: UiSettings;
  readonly privileges: string[];
  readonly endpoints: { readonly serverManager: EndpointsToken; readonly organizationAdmin: EndpointsToken };
  /** As it stood before the login that opened this session. */
  readonly lastSuccessfulLogin: number | null;
  readonly lastFailedLogin: number | null;
  readonly lastFailedLoginIp: string | null;
}

export interface UserDetails {
  readonly guid: string;
  readonly login: string;
  readonly firstName: string;
  readonly lastName: string;
  readonly source: 'LOCAL' | 'LDAP';
  readonly active: boolean;
  readonly externalId: string | null;
  readonly settings: UiSettings;
  readonly organization: { readonly guid: string; readonly name: string } | null;
  readonly groups: { readonly guid: string; readonly name: string }[];
  readonly lastSuccessfulLogin: number | null;
  readonly lastFailedLogin: number | null;
  readonly lastFailedLoginIp: string | null;
}

/** Nodes have no UI; they get the product's defaults. */
const DEFAULT_SETTINGS: UiSettings = {
  language: 'EN',
  uiTimeZone: 'UTC',
  uiConsoleMode: 'WORKFLOW',
  pageSize: 20,
  timeFormat: 24,
  infoTourEnabled: false,
};

export class SessionInfoService {
  readonly #store: Store;
  readonly #rbac: RbacService;
  readonly #tokens: TokenService;
  readonly #config: Config;
  readonly #clock: Clock;
  readonly #settingsCache: TaggedCache<UiSettings> | undefined;

  constructor(
    store: Store,
    clock: Clock,
    config: Config,
    rbac: RbacService,
    tokens: TokenService,
    settingsCache?: TaggedCache<UiSettings>,
  ) {
    this.#settingsCache = settingsCache;
    this.#store = store;
    this.#clock = clock;
    this.#config = config;
    this.#rbac = rbac;
    this.#tokens = tokens;
  }

  async describe(auth: AuthContext): Promise<SessionInfo> {
    const { principal, session } = auth;
    // One after the other: both are nearly always cache hits, where a Promise.all costs more.
    const privileges = await this.#rbac.privilegesOf(principal);
    const settings = await this.#settingsOf(auth);
    const endpointsToken = (
      audience: string,
      privilege: string,
    ): EndpointsToken | Promise<EndpointsToken> => {
      if (!privileges.includes(privilege)) {
        return {
          token: null,
          warning: `Not issued: ${principal.name} does not hold the privilege ${privilege}.`,
        };
      }
      if (!session) return { token: null, warning: 'Not issued: the request has no session.' };
      return this.#tokens
        .signEndpointsToken({
          audience,
          subject: principal.id,
          kind: principal.kind,
          name: principal.name,
          sid: session.id,
          expiresAt: Math.min(this.#clock.now() + this.#config.endpointsTokenLifetimeMs, session.expires_at),
        })
        .then((token) => ({ token, warning: null }));
    };
    const { serverManager, organizationAdmin } = ENDPOINTS_AUDIENCES;
    return {
      requester: { guid: principal.id, name: principal.name },
      settings,
      privileges: [...privileges],
      endpoints: {
        serverManager: await endpointsToken(serverManager.audience, serverManager.privilege),
        organizationAdmin: await endpointsToken(organizationAdmin.audience, organizationAdmin.privilege),
      },
      lastSuccessfulLogin: session?.prev_success_at ?? null,
      lastFailedLogin: session?.prev_failed_at ?? null,
      lastFailedLoginIp: session?.prev_failed_ip ?? null,
    };
  }

  async details(auth: AuthContext): Promise<UserDetails> {
    const { principal, session } = auth;
    const history = {
      lastSuccessfulLogin: session?.prev_success_at ?? null,
      lastFailedLogin: session?.prev_failed_at ?? null,
      lastFailedLoginIp: session?.prev_failed_ip ?? null,
    };
    if (principal.kind === 'node') {
      return {
        guid: principal.id,
        login: principal.name,
        firstName: '',
        lastName: '',
        source: 'LOCAL',
        active: true,
        externalId: null,
        settings: DEFAULT_SETTINGS,
        organization: null,
        groups: [],
        ...history,
      };
    }
    const [user, tenancies, groups] = await Promise.all([
      this.#store.users.findById(principal.id),
      this.#store.users.tenancies(principal.id),
      this.#store.rbac.groupsOfUser(principal.id),
    ]);
    const first = tenancies[0];
    return {
      guid: principal.id,
      login: user?.username ?? principal.name,
      firstName: user?.first_name ?? '',
      lastName: user?.last_name ?? '',
      source: user?.provider === 'activeDirectory' ? 'LDAP' : 'LOCAL',
      active: user?.active === 1,
      externalId: user?.external_id ?? null,
      settings: user ? settingsOf(user) : DEFAULT_SETTINGS,
      organization: first ? { guid: first.tenantId, name: first.name } : null,
      groups: groups.map((g) => ({ guid: g.id, name: g.name })),
      ...history,
    };
  }

  /** Cached per user, filed under the user: a change of the settings columns drops it (see the change feed). */
  #settingsOf(auth: AuthContext): Promise<UiSettings> {
    const { principal } = auth;
    if (principal.kind !== 'user') return Promise.resolve(DEFAULT_SETTINGS);
    const read = async () => {
      const user = await this.#store.users.findById(principal.id);
      return user ? settingsOf(user) : DEFAULT_SETTINGS;
    };
    const tag = changeTags.user(principal.id);
    return this.#settingsCache ? this.#settingsCache.read(tag, [tag], read) : read();
  }
}

function settingsOf(user: UserRow): UiSettings {
  return {
    language: user.language,
    uiTimeZone: user.ui_time_zone,
    uiConsoleMode: user.ui_console_mode,
    pageSize: user.page_size,
    timeFormat: user.time_format,
    infoTourEnabled: user.info_tour_enabled === 1,
  };
}
