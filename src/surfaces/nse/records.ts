import { Type } from 'typebox';
import type { UserView } from '../../core/accounts.js';

// The reference names the role `role` in one example and `role_name` in another (the name that
// create and change take): both, so that a client reading either finds it.
export const TenancyRecord = Type.Object({
  id: Type.String(),
  name: Type.String(),
  code: Type.String(),
  role: Type.String(),
  role_name: Type.String(),
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
    tenancies: user.tenancies.map((t) => ({
      id: t.tenantId,
      name: t.name,
      code: t.code,
      role: t.role,
      role_name: t.role,
    })),
  };
}
