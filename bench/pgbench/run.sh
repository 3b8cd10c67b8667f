#!/usr/bin/env bash
# bash bench/pgbench/run.sh [ROUNDS] [SECONDS]: seeds gatehouse_pgbench (bench/pgbench/seed.ts),
# then runs the three forms of a sign-in's statements and a logout's by turns with pgbench (10
# clients, 2 threads, prepared) and prints each run's sign-ins or logouts per second.
# docs/scaling.md, *How far one PostgreSQL carries*, is written from its output. Needs pgbench
# (Debian: package postgresql-15).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-10}
host=${PGHOST:-127.0.0.1}
node --import tsx bench/pgbench/seed.ts gatehouse_pgbench
for round in $(seq "$rounds"); do
  for form in guarded unguarded transaction; do
    tps=$(pgbench -h "$host" -U postgres -n -M prepared -c 10 -j 2 -T "$seconds" \
      -f "bench/pgbench/sign-in-$form.sql" gatehouse_pgbench | awk '/^tps/ {print int($3)}')
    echo "round $round  $form  $tps sign-ins/s"
  done
  tps=$(pgbench -h "$host" -U postgres -n -M prepared -c 10 -j 2 -T "$seconds" \
    -f bench/pgbench/logout.sql gatehouse_pgbench | awk '/^tps/ {print int($3)}')
  echo "round $round  logout  $tps logouts/s"
  # Every seeded session live again for the next round (not timed).
  psql -h "$host" -U postgres -q -c "update sessions set revoked_at = null, revoke_reason = null where revoked_at is not null" -c "vacuum sessions" gatehouse_pgbench
done
psql -h "$host" -U postgres -qc 'drop database gatehouse_pgbench with (force)' postgres
