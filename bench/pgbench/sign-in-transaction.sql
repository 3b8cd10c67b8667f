-- One NSE sign-in as PostgreSQL sees it: the throttle counters, the user (its row kept with
-- \gset for the writes), then the form of a token sign-in (two guarded rows): BEGIN, the 3 writes, COMMIT.
-- The statements were read off the server log of a real sign-in (log_statement=all); run by
-- bench/pgbench/run.sh against a database seeded by bench/pgbench/seed.ts (docs/scaling.md).
\set n random(0, 999)
select "scope", "subject", "hits", "window_start", "locked_until" from "login_throttle" where ((scope = 'pair' and subject = 'k' || :n || ' 127.0.0.1') or (scope = 'account' and subject = 'k' || :n) or (scope = 'ip' and subject = '127.0.0.1'));
select "users".*, (select "tenancies"."tenant_id" from "tenancies" inner join "tenants" on "tenants"."id" = "tenancies"."tenant_id" where "tenancies"."user_id" = "users"."id" order by "tenancies"."created_at", "tenants"."code" limit 1) as "first_tenant_id" from "users" where "username_key" = 'user' || :n \gset
begin;
update "users" set "failed_count" = 0, "locked_until" = NULL, "last_success_at" = 1796607378387 where "id" = :id and "active" = 1 and "password_changed_at" = :password_changed_at;
insert into "audit_events" ("id", "at", "actor_type", "actor_id", "actor_name", "action", "target_type", "target_id", "target_name", "tenant_id", "ip", "outcome", "reason") values (gen_random_uuid()::text, 1796607378388, 'user', :id, :username, 'signin', 'user', :id, :username, :first_tenant_id, '127.0.0.1', 'success', 'password');
insert into "sessions" ("id", "kind", "user_id", "node_id", "api_token_id", "secret_hash", "created_at", "last_seen_at", "expires_at", "revoked_at", "revoke_reason", "ip", "user_agent", "prev_success_at", "prev_failed_at", "prev_failed_ip", "token_generation", "prior_token_valid_until") values (gen_random_uuid()::text, 'user', :id, NULL, NULL, md5(random()::text), 1796607378388, 1796607378388, 1796650578388, NULL, NULL, '127.0.0.1', 'pgbench', NULL, NULL, NULL, 0, NULL);
commit;
