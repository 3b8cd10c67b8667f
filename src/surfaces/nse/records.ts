import { Type } from 'typebox';
import type { UserView } from '../../core/accounts.js';

export const TenancyRecord = Type.Object({
  id: Type.String(),
  name: Type.String(),
  code: Type.String(),
  role: Type.String(),
});

export const UserRecord = Type.Object({
  id: Type.String(),
  username: Type.String(),
  firstName: Type.String(),
  lastName: Type.String(),
  displayName: Type.String(),
  email: Type.String(),
  tenancies: Type.Array(TenancyRecord),
});

export const AuthRecord = Type.Object({ user: UserRecord, token: Type.String() });

export function userRecord(user: UserView) {
  return {
    id: user.id,
    username: user.username,
    firstName: user.firstName,
    lastName: user.lastName,
    displayName: user.displayName,
    email: user.email,
    tenancies: user.tenancies.map((t) => ({ id: t.tenantId, name: t.name, code: t.code, role: t.role })),
  };
}
