#!/usr/bin/env bash
# starwal demo: live PostgreSQL changes replicated into a StarRocks stand-in, end to end, in
# about a minute (after the first build).
#
#   ./scripts/demo.sh
#
# What it does, all on 127.0.0.1 and all removed again when it exits (also on Ctrl-C):
#   1. checks for Rust, PostgreSQL server binaries, a C toolchain and the mariadb client, and
#      installs the missing Debian packages with apt-get (as root, or through sudo);
#   2. builds `starwal` and `starrocks-sim` (debug profile, see STARWAL_DEMO_PROFILE below);
#   3. starts a throwaway Postgres cluster (wal_level=logical) in a temp dir on a free port — as
#      user `postgres` when run as root — with a database `app` and two empty tables;
#   4. starts `starrocks-sim` on free ports. starrocks-sim is a TEST AND DEMO STAND-IN for
#      StarRocks, NOT a database: it keeps the tables in memory and speaks just enough of
#      StarRocks' Stream Load and MySQL protocols for starwal. Point starwal at a real StarRocks
#      cluster for anything else;
#   5. starts `starwal run`, waits until it streams, then writes the seed rows (starwal replicates
#      changes from the moment its slot exists; rows already in a table are not copied yet — the
#      initial snapshot is a future feature);
#   6. drives inserts, updates and deletes for STARWAL_DEMO_TRAFFIC_S seconds, printing
#      `starwal status` every few seconds;
#   7. waits until the target has caught up and compares row counts and row contents of both sides;
#   8. stops starwal with SIGTERM (a drain: it loads and confirms what it buffered, then exits 0).
#
# Exit status: 0 when both tables match and starwal exited 0, 1 otherwise.
#
# Settings (environment):
#   STARWAL_DEMO_PROFILE=debug|release  cargo profile (default debug: a release build takes many
#                                       minutes on a small machine and the demo's load is light)
#   STARWAL_DEMO_TRAFFIC_S=20           seconds of live traffic
#   STARWAL_DEMO_PGBIN=/path/to/bin     PostgreSQL server binaries (default: newest
#                                       /usr/lib/postgresql/*/bin, or STARWAL_TEST_PGBIN)
#   STARWAL_DEMO_KEEP=1                 keep the temp dir (logs, data) instead of removing it
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${STARWAL_DEMO_PROFILE:-debug}
TRAFFIC_S=${STARWAL_DEMO_TRAFFIC_S:-20}
KEEP=${STARWAL_DEMO_KEEP:-0}
PG_PASSWORD=demo-pg-password
SR_PASSWORD=demo-sr-password
SR_DATABASE=demo
TABLES=(orders customers)

case "$PROFILE" in debug | release) ;; *) echo "STARWAL_DEMO_PROFILE must be debug or release" >&2; exit 2 ;; esac
[[ "$TRAFFIC_S" =~ ^[0-9]+$ ]] || { echo "STARWAL_DEMO_TRAFFIC_S must be a whole number of seconds" >&2; exit 2; }

# Settings meant for a real agent (a .env file, exported STARWAL_* variables) must not leak into
# the demo's agent or its status calls: the demo sets every variable it needs itself.
while IFS= read -r name; do
  case "$name" in STARWAL_DEMO_* | STARWAL_TEST_PGBIN) ;; STARWAL_*) unset "$name" ;; esac
done < <(compgen -e)

T0=$SECONDS
step() { printf '\n==> [%3ds] %s\n' $((SECONDS - T0)) "$*"; }
info() { printf '    %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------------------------ cleanup
WORK=""
PG_STARTED=0
SIM_PID=""
AGENT_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
    kill -TERM "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
  fi
  if [ -n "$SIM_PID" ] && kill -0 "$SIM_PID" 2>/dev/null; then
    kill -TERM "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
  fi
  if [ "$PG_STARTED" = 1 ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ "$rc" != 0 ] && [ "$rc" != 130 ] && [ "$rc" != 143 ]; then # failed, not interrupted
      for log in starwal.log sim.log postgres.log; do
        if [ -s "$WORK/$log" ]; then
          printf '\n--- last lines of %s ---\n' "$log" >&2
          tail -n 25 "$WORK/$log" >&2
        fi
      done
    fi
    if [ "$KEEP" = 1 ]; then
      echo "kept $WORK (logs: starwal.log, sim.log, postgres.log)"
    else
      rm -rf "$WORK"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command as the Postgres server's owner: `postgres` when we are root, else ourselves.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# A TCP port on 127.0.0.1 that nothing listens on (checked by connecting; the demo binds it
# a moment later), below Linux's ephemeral range so no outgoing connection holds it.
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  fail "no free TCP port found"
}

# ------------------------------------------------------------------------------ 1. prerequisites
step "Checking prerequisites"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 \
  || fail "no cargo on PATH: install Rust 1.88 or newer (https://rustup.rs), then run this again"

find_pgbin() {
  local dir
  for dir in "${STARWAL_DEMO_PGBIN:-}" "${STARWAL_TEST_PGBIN:-}"; do
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  done
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
  return 1
}

mysql_client() { command -v mariadb 2>/dev/null || command -v mysql 2>/dev/null || true; }

required=()
optional=()
find_pgbin >/dev/null || required+=(postgresql)
command -v cc >/dev/null 2>&1 || required+=(build-essential)
if command -v pkg-config >/dev/null 2>&1; then
  pkg-config --exists openssl || required+=(libssl-dev)
  pkg-config --exists zlib || required+=(zlib1g-dev)
else
  required+=(pkg-config libssl-dev zlib1g-dev)
fi
[ -n "$(mysql_client)" ] || optional+=(mariadb-client)
command -v curl >/dev/null 2>&1 || optional+=(curl)

missing=("${required[@]}" "${optional[@]}")
if [ ${#missing[@]} -gt 0 ]; then
  apt=()
  if [ "$(id -u)" = 0 ]; then
    apt=(env DEBIAN_FRONTEND=noninteractive)
  elif command -v sudo >/dev/null 2>&1 && { [ -t 0 ] || sudo -n true 2>/dev/null; }; then
    apt=(sudo env DEBIAN_FRONTEND=noninteractive)
  fi
  if [ ${#apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    info "apt-get install ${missing[*]}"
    "${apt[@]}" apt-get update -q >/dev/null
    "${apt[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  elif [ ${#required[@]} -gt 0 ]; then
    fail "missing Debian packages: ${required[*]} — install them (apt-get install ${missing[*]}) or run as root"
  else
    info "no mariadb client: the target is read through starrocks-sim's admin endpoint instead"
  fi
fi
PGBIN=$(find_pgbin) || fail "no PostgreSQL server binaries (initdb) found; set STARWAL_DEMO_PGBIN"
if [ -x "$PGBIN/psql" ]; then PSQL="$PGBIN/psql"; else PSQL=$(command -v psql) || fail "no psql"; fi
MYSQL=$(mysql_client)
if [ -z "$MYSQL" ] && ! command -v curl >/dev/null 2>&1; then
  fail "need the mariadb client or curl to read the target"
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi
info "PostgreSQL: $("$PGBIN/postgres" --version) ($PGBIN)"
info "target reader: ${MYSQL:-curl + starrocks-sim admin endpoint}"

# ------------------------------------------------------------------------------------- 2. build
step "Building starwal and starrocks-sim (cargo, $PROFILE profile)"
cargo_flags=()
[ "$PROFILE" = release ] && cargo_flags=(--release)
(
  cd "$REPO"
  cargo build "${cargo_flags[@]}" --bin starwal
  cargo build "${cargo_flags[@]}" -p starrocks-sim --bin starrocks-sim
)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO/$TARGET_DIR" ;; esac
STARWAL="$TARGET_DIR/$PROFILE/starwal"
SIM="$TARGET_DIR/$PROFILE/starrocks-sim"
if [ ! -x "$STARWAL" ] || [ ! -x "$SIM" ]; then fail "built binaries not found under $TARGET_DIR/$PROFILE"; fi

# ----------------------------------------------------------------------------------- 3. Postgres
WORK=$(mktemp -d /tmp/starwal-demo.XXXXXX)
chmod 755 "$WORK" # the postgres user must reach its directory inside
PGDIR="$WORK/pg"
PGDATA="$PGDIR/data"
PGPORT=$(free_port)
mkdir -p "$PGDIR"
if [ "$(id -u)" = 0 ]; then chown postgres "$PGDIR"; fi
chmod 700 "$PGDIR"

step "Starting a throwaway PostgreSQL cluster on 127.0.0.1:$PGPORT (data in $PGDATA)"
as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C --no-sync \
  >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; fail "initdb"; }
as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGDIR'
wal_level = logical
max_replication_slots = 4
max_wal_senders = 4
fsync = off
EOF
# Local socket: trust (the superuser sets the demo up); TCP: SCRAM, as in production. A logical
# replication connection matches the database column, so `all` covers it.
as_pg tee "$PGDATA/pg_hba.conf" >/dev/null <<EOF
local all all                trust
host  all all 127.0.0.1/32   scram-sha-256
EOF
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDIR/server.log" -w -t 60 start >/dev/null \
  || { cat "$PGDIR/server.log" >&2; fail "postgres did not start"; }
PG_STARTED=1
ln -s "$PGDIR/server.log" "$WORK/postgres.log"

as_pg "$PSQL" -h "$PGDIR" -p "$PGPORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -q <<EOF
CREATE ROLE demo LOGIN REPLICATION PASSWORD '$PG_PASSWORD';
CREATE DATABASE app OWNER demo;
EOF

# The application's connection: the demo role over TCP, as starwal connects.
sql() {
  PGPASSWORD=$PG_PASSWORD "$PSQL" -h 127.0.0.1 -p "$PGPORT" -U demo -d app \
    -X -q -At -F $'\t' -v ON_ERROR_STOP=1 "$@"
}
sql <<'EOF'
CREATE TABLE customers (
  id         bigint PRIMARY KEY,
  name       text NOT NULL,
  tier       text NOT NULL DEFAULT 'basic',
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
  id          bigserial PRIMARY KEY,
  customer_id bigint NOT NULL,
  status      text NOT NULL DEFAULT 'new',
  amount      numeric(12,2) NOT NULL,
  note        text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
EOF
info "database app: tables public.customers and public.orders (empty), role demo (LOGIN REPLICATION)"

# ------------------------------------------------------------------------------ 4. starrocks-sim
step "Starting starrocks-sim (a StarRocks stand-in for tests and demos, NOT a database)"
"$SIM" --fe-http 127.0.0.1:0 --be-http 127.0.0.1:0 --mysql 127.0.0.1:0 --admin 127.0.0.1:0 \
  --user root --password "$SR_PASSWORD" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 1 100); do
  grep -q '^starrocks-sim ready' "$WORK/sim.log" && break
  kill -0 "$SIM_PID" 2>/dev/null || fail "starrocks-sim exited"
  sleep 0.1
done
ready=$(grep '^starrocks-sim ready' "$WORK/sim.log") || fail "starrocks-sim did not report ready"
sim_addr() { tr ' ' '\n' <<<"$ready" | sed -n "s/^$1=//p"; }
SIM_FE=$(sim_addr fe_http)
SIM_MYSQL=$(sim_addr mysql)
SIM_ADMIN=$(sim_addr admin)
info "FE HTTP (Stream Load) $SIM_FE, MySQL protocol $SIM_MYSQL, admin $SIM_ADMIN"

# ------------------------------------------------------------------------------------ 5. starwal
CONTROL_PORT=$(free_port)
METRICS_PORT=$(free_port)
while [ "$METRICS_PORT" = "$CONTROL_PORT" ]; do METRICS_PORT=$(free_port); done
CONTROL_URL="http://127.0.0.1:$CONTROL_PORT"

status() { "$STARWAL" status --addr "$CONTROL_URL" "$@"; }

step "Starting starwal run (control $CONTROL_URL, metrics http://127.0.0.1:$METRICS_PORT/metrics)"
info "STARWAL_PG_URL=postgres://demo:***@127.0.0.1:$PGPORT/app?sslmode=disable"
info "STARWAL_TABLES=public.orders,public.customers  STARWAL_FLUSH_INTERVAL_MS=200"
info "STARWAL_STARROCKS_URL=http://$SIM_FE  STARWAL_STARROCKS_DATABASE=$SR_DATABASE"
# cwd = the temp dir, so no .env file of the caller is read.
(
  cd "$WORK"
  exec env \
    STARWAL_PG_URL="postgres://demo:$PG_PASSWORD@127.0.0.1:$PGPORT/app?sslmode=disable" \
    STARWAL_TABLES=public.orders,public.customers \
    STARWAL_STARROCKS_URL="http://$SIM_FE" \
    STARWAL_STARROCKS_MYSQL="$SIM_MYSQL" \
    STARWAL_STARROCKS_USER=root \
    STARWAL_STARROCKS_PASSWORD="$SR_PASSWORD" \
    STARWAL_STARROCKS_DATABASE="$SR_DATABASE" \
    STARWAL_FLUSH_INTERVAL_MS=200 \
    STARWAL_CONTROL_ADDR="127.0.0.1:$CONTROL_PORT" \
    STARWAL_METRICS_ADDR="127.0.0.1:$METRICS_PORT" \
    STARWAL_SHUTDOWN_TIMEOUT_S=30 \
    STARWAL_LOG=info \
    "$STARWAL" run
) >"$WORK/starwal.log" 2>&1 &
AGENT_PID=$!

streaming=0
for _ in $(seq 1 120); do
  kill -0 "$AGENT_PID" 2>/dev/null || fail "starwal exited during setup"
  if status --json 2>/dev/null | grep -Eq '"serving": ?true'; then streaming=1; break; fi
  sleep 0.25
done
[ "$streaming" = 1 ] || fail "starwal did not start streaming within 30 s (see starwal.log below)"
info "starwal is streaming: slot, publication and target tables are set up"
status

# --------------------------------------------------------------------------------------- seed
step "Seeding 500 customers and 5000 orders (written after the slot exists, so they replicate)"
sql <<'EOF'
INSERT INTO customers (id, name, tier)
  SELECT g, 'customer ' || g, (ARRAY['basic', 'silver', 'gold'])[1 + g % 3]
  FROM generate_series(1, 500) g;
EOF
for batch in 1 2 3 4 5; do
  sql -c "INSERT INTO orders (customer_id, amount, note)
            SELECT 1 + (random() * 499)::int, round((random() * 500)::numeric, 2), 'seed batch $batch'
            FROM generate_series(1, 1000);"
done

# ------------------------------------------------------------------------------------- traffic
step "Live traffic for ${TRAFFIC_S}s: inserts, updates and deletes, status every 5s"
traffic_end=$((SECONDS + TRAFFIC_S))
next_status=$((SECONDS + 5))
tick=0
while [ "$SECONDS" -lt "$traffic_end" ]; do
  tick=$((tick + 1))
  sql <<EOF
BEGIN;
INSERT INTO orders (customer_id, amount, note)
  SELECT 1 + (random() * 499)::int, round((random() * 500)::numeric, 2), 'tick $tick'
  FROM generate_series(1, 150);
UPDATE orders
   SET status = CASE status WHEN 'new' THEN 'paid' ELSE 'shipped' END,
       amount = amount + 1, updated_at = now()
 WHERE id IN (SELECT id FROM orders WHERE status <> 'shipped' ORDER BY random() LIMIT 120);
DELETE FROM orders WHERE id IN (SELECT id FROM orders ORDER BY random() LIMIT 40);
COMMIT;
UPDATE customers SET tier = 'gold', updated_at = now()
 WHERE id IN (SELECT id FROM customers ORDER BY random() LIMIT 10);
INSERT INTO customers (id, name) SELECT max(id) + 1, 'customer ' || (max(id) + 1) FROM customers;
DELETE FROM customers WHERE id = (SELECT min(id) FROM customers);
EOF
  if [ "$SECONDS" -ge "$next_status" ]; then
    echo
    echo "--- starwal status after $((TRAFFIC_S - (traffic_end - SECONDS)))s of traffic ($tick rounds) ---"
    status || true
    next_status=$((SECONDS + 5))
  fi
  sleep 0.5
done
info "$tick rounds of traffic written"

# ------------------------------------------------------------------------------------- compare
# Each table as `id<TAB>...` lines ordered by id, from either side; compared by digest.
source_rows() {
  case "$1" in
    orders) sql -c "SELECT id, customer_id, status, amount, note FROM orders ORDER BY id" ;;
    customers) sql -c "SELECT id, name, tier FROM customers ORDER BY id" ;;
  esac
}
target_rows() {
  local cols
  case "$1" in
    orders) cols="id, customer_id, status, amount, note" ;;
    customers) cols="id, name, tier" ;;
  esac
  "$MYSQL" -h "${SIM_MYSQL%:*}" -P "${SIM_MYSQL##*:}" -u root --password="$SR_PASSWORD" -N -B \
    -e "SELECT $cols FROM $SR_DATABASE.$1 ORDER BY id"
}
source_count() { sql -c "SELECT count(*) FROM $1"; }
target_count() {
  if [ -n "$MYSQL" ]; then
    "$MYSQL" -h "${SIM_MYSQL%:*}" -P "${SIM_MYSQL##*:}" -u root --password="$SR_PASSWORD" -N -B \
      -e "SELECT count(*) FROM $SR_DATABASE.$1" 2>/dev/null || echo "?"
  else
    curl -fsS "http://$SIM_ADMIN/tables/$SR_DATABASE/$1" 2>/dev/null \
      | grep -o '"row_count":[0-9]*' | cut -d: -f2 || echo "?"
  fi
}
digest() { md5sum | cut -d' ' -f1; }

tables_match() {
  local t
  for t in "${TABLES[@]}"; do
    [ "$(source_count "$t")" = "$(target_count "$t")" ] || return 1
    if [ -n "$MYSQL" ]; then
      [ "$(source_rows "$t" | digest)" = "$(target_rows "$t" 2>/dev/null | digest)" ] || return 1
    fi
  done
}

step "Waiting for the target to catch up"
caught_up=0
wait_start=$SECONDS
while [ $((SECONDS - wait_start)) -lt 60 ]; do
  if tables_match; then caught_up=1; break; fi
  sleep 0.5
done
if [ "$caught_up" = 1 ]; then
  info "caught up $((SECONDS - wait_start))s after the last write"
else
  info "not caught up after 60s"
fi
status || true

step "Source (PostgreSQL) vs target (starrocks-sim) row counts"
what="row counts"
[ -n "$MYSQL" ] && what="row counts and contents (id, values; md5 of the sorted rows)"
printf '    %-18s %10s %10s  %s\n' table postgres target "$what"
mismatch=0
for t in "${TABLES[@]}"; do
  src=$(source_count "$t")
  dst=$(target_count "$t")
  verdict=equal
  if [ "$src" != "$dst" ]; then
    verdict=DIFFERENT
  elif [ -n "$MYSQL" ] && [ "$(source_rows "$t" | digest)" != "$(target_rows "$t" | digest)" ]; then
    verdict="counts equal, CONTENTS DIFFER"
  fi
  [ "$verdict" = equal ] || mismatch=1
  printf '    %-18s %10s %10s  %s\n' "public.$t" "$src" "$dst" "$verdict"
done

if [ -n "$MYSQL" ]; then
  echo
  info "the newest target rows, with starwal's audit columns ($MYSQL -> starrocks-sim):"
  "$MYSQL" -h "${SIM_MYSQL%:*}" -P "${SIM_MYSQL##*:}" -u root --password="$SR_PASSWORD" -t \
    -e "SELECT id, status, amount, _starwal_op, _starwal_lsn, _starwal_synced_at
        FROM $SR_DATABASE.orders ORDER BY id DESC LIMIT 3" | sed 's/^/    /' || true
fi
if command -v curl >/dev/null 2>&1; then
  echo
  info "a few Prometheus metrics (http://127.0.0.1:$METRICS_PORT/metrics):"
  curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" \
    | grep -E '^starwal_(up|lag_bytes|rows_loaded_total|loads_total)[ {]|^starwal_phase\{.*\} 1$' \
    | sed 's/^/    /' || true
fi

# ------------------------------------------------------------------------------------ shutdown
step "Stopping starwal with SIGTERM (drain: load and confirm what is buffered, exit 0)"
kill -TERM "$AGENT_PID"
agent_rc=0
wait "$AGENT_PID" || agent_rc=$?
AGENT_PID=""
info "starwal exited with status $agent_rc"
info "last log lines:"
tail -n 3 "$WORK/starwal.log" | sed 's/^/      /'

step "Done in $((SECONDS - T0))s"
[ "$mismatch" = 0 ] || fail "source and target differ"
[ "$agent_rc" = 0 ] || fail "starwal exited with status $agent_rc after SIGTERM (expected 0)"
echo "OK: every change made in Postgres is in the target; starwal drained and exited 0."
