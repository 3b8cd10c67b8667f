import { Type } from 'typebox';
import type { SessionInfo, UserDetails } from '../../core/session-info.js';
import { NullableInteger, NullableString } from '../schema-helpers.js';

/** The Storware bodies, field for field as in session-api.txt. Times are epoch milliseconds. */
const NameAndGuid = Type.Object({ guid: Type.String(), name: Type.String() });
const AppUserSettings = Type.Object({ pageSize: Type.Integer(), timeFormat: Type.Integer() });

export const SessionInfoResponse = Type.Object(
  {
    requester: NameAndGuid,
    infoTourEnabled: Type.Boolean(),
    lastFailedLoginIp: NullableString(),
    language: Type.String(),
    appUserSettings: AppUserSettings,
    privileges: Type.Array(Type.String()),
    endpointsTokens: Type.Object({
      endpointsServerManagerToken: NullableString(),
      endpointsServerManagerWarning: NullableString(),
      endpointsOrganizationAdminToken: NullableString(),
      endpointsOrganizationAdminWarning: NullableString(),
    }),
    uiConsoleMode: Type.String(),
    lastSuccessfulLogin: NullableInteger(),
    lastFailedLogin: NullableInteger(),
    uiTimeZone: Type.String(),
  },
  { $id: 'SessionInfoResponse' },
);

export const AppUserDetails = Type.Object(
  {
    login: Type.String(),
    firstName: Type.String(),
    lastName: Type.String(),
    lastFailedLoginIp: NullableString(),
    source: Type.String(),
    language: Type.String(),
    active: Type.Boolean(),
    infoTourEnabled: Type.Boolean(),
    endpointsOrganization: Type.Unsafe<{ guid: string; name: string } | null>({
      type: ['object', 'null'],
      properties: { guid: { type: 'string' }, name: { type: 'string' } },
    }),
    groups: Type.Array(NameAndGuid),
    appUserSettings: AppUserSettings,
    externalId: NullableString(),
    thirdPartyRestriction: Type.String(),
    guid: Type.String(),
    lastSuccessfulLogin: NullableInteger(),
    lastFailedLogin: NullableInteger(),
    uiTimeZone: Type.String(),
  },
  { $id: 'AppUserDetails' },
);

export const StorwareError = Type.Object(
  { errorCode: Type.String(), message: Type.String() },
  { $id: 'StorwareError' },
);

export function sessionInfoBody(info: SessionInfo) {
  return {
    requester: info.requester,
    infoTourEnabled: info.settings.infoTourEnabled,
    lastFailedLoginIp: info.lastFailedLoginIp,
    language: info.settings.language,
    appUserSettings: { pageSize: info.settings.pageSize, timeFormat: info.settings.timeFormat },
    privileges: info.privileges,
    endpointsTokens: {
      endpointsServerManagerToken: info.endpoints.serverManager.token,
      endpointsServerManagerWarning: info.endpoints.serverManager.warning,
      endpointsOrganizationAdminToken: info.endpoints.organizationAdmin.token,
      endpointsOrganizationAdminWarning: info.endpoints.organizationAdmin.warning,
    },
    uiConsoleMode: info.settings.uiConsoleMode,
    lastSuccessfulLogin: info.lastSuccessfulLogin,
    lastFailedLogin: info.lastFailedLogin,
    uiTimeZone: info.settings.uiTimeZone,
  };
}

export function userDetailsBody(details: UserDetails) {
  return {
    login: details.login,
    firstName: details.firstName,
    lastName: details.lastName,
    lastFailedLoginIp: details.lastFailedLoginIp,
    source: details.source,
    language: details.settings.language,
    active: details.active,
    infoTourEnabled: details.settings.infoTourEnabled,
    endpointsOrganization: details.organization,
    groups: details.groups,
    appUserSettings: { pageSize: details.settings.pageSize, timeFormat: details.settings.timeFormat },
    externalId: details.externalId,
    // Gatehouse has no third-party restrictions; the field is the product's default.
    thirdPartyRestriction: 'NO_RESTRICTION',
    guid: details.guid,
    lastSuccessfulLogin: details.lastSuccessfulLogin,
    lastFailedLogin: details.lastFailedLogin,
    uiTimeZone: details.settings.uiTimeZone,
  };
}
