#!/usr/bin/env bash
# What a PostgreSQL database's backends wait for (docs/performance.md):
# samples pg_stat_activity every 20 ms for SECONDS (10) and prints how
# often each wait event and statement was seen. Run it beside a load, e.g.
# `dispatch bench --store-dsn …` or scripts/bench-compare.sh.
#
#   DSN=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable scripts/pg-waits.sh DATABASE [SECONDS]
#
# "cpu" means running (no wait event). Only reads pg_stat_activity.
set -euo pipefail
DSN=${DSN:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
db=${1:?usage: scripts/pg-waits.sh DATABASE [SECONDS]}
secs=${2:-10}
end=$((SECONDS + secs))
while [ "$SECONDS" -lt "$end" ]; do
  psql -qAt "$DSN" -v db="$db" <<'SQL'
SELECT coalesce(wait_event_type, 'cpu') || ':' || coalesce(wait_event, '-') || '  ' || state || '  '
  || left(regexp_replace(query, '\s+', ' ', 'g'), 70)
FROM pg_stat_activity
WHERE datname = :'db' AND state <> 'idle' AND pid <> pg_backend_pid();
SQL
  sleep 0.02
done | sort | uniq -c | sort -rn
