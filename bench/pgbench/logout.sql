-- One logout (POST /api/session/logout with a bearer token) as PostgreSQL sees it since
-- 2026-12-06: the session with its principal, the user's first tenant (for the audit event),
-- then a transaction: the session ended, its cache tag announced, the audit event. The statements
-- were read off the server log of a real logout (log_statement=all, 2026-12-07); run by
-- bench/pgbench/run.sh against a database seeded by bench/pgbench/seed.ts (docs/scaling.md).
\set s random(0, 299999)
select "sessions".*, coalesce("users"."active", "nodes"."active") as "principal_active", coalesce("users"."username", "nodes"."login") as "principal_name" from "sessions" left join "users" on "users"."id" = "sessions"."user_id" left join "nodes" on "nodes"."id" = "sessions"."node_id" where "sessions"."id" = 'bench-session-' || :s::text \gset
select (select "tenancies"."tenant_id" from "tenancies" inner join "tenants" on "tenants"."id" = "tenancies"."tenant_id" where "tenancies"."user_id" = "users"."id" order by "tenancies"."created_at", "tenants"."code" limit 1) as "first_tenant_id" from "users" where "id" = :user_id \gset
begin;
update "sessions" set "revoked_at" = 1796674695653, "revoke_reason" = 'logout' where "id" = 'bench-session-' || :s::text and ("revoked_at" is null) is true;
-- The tag is session:<id>, its colon apart: pgbench reads :name as a variable even in a literal.
select pg_notify('gatehouse_invalidate', 'session' || ':' || 'bench-session-' || :s::text);
insert into "audit_events" ("id", "at", "actor_type", "actor_id", "actor_name", "action", "target_type", "target_id", "target_name", "tenant_id", "ip", "outcome", "reason") values (gen_random_uuid()::text, 1796674695655, 'user', :user_id, :principal_name, 'signout', 'session', 'bench-session-' || :s::text, '', :first_tenant_id, '127.0.0.1', 'success', '');
commit;
