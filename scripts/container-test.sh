#!/usr/bin/env bash
# Builds the Dockerfile with podman and runs the image against a throwaway PostgreSQL and
# starrocks-sim: what CI's "container" step (.ci/run) runs. Needs root on Debian 12 (rootful
# podman; Postgres runs as user `postgres`):
#
#   apt-get install podman runc debootstrap      # plus what .ci/run installs (postgresql, mariadb-client)
#   scripts/container-test.sh                    # the whole Dockerfile: build stage, then runtime
#   scripts/container-test.sh --binary target/release/starwal   # `--target prebuilt` from a binary
#
# Checks, in order (the script stops at the first failure, printing the container's log):
#   1. the image builds (`podman build --format docker`, which keeps HEALTHCHECK);
#   2. its default user is 10001:10001 and it declares a HEALTHCHECK;
#   3. every container below runs as that user with a read-only root filesystem and no tmpfs
#      (`--read-only --read-only-tmpfs=false`) on the host network (traffic stays on loopback);
#   4. `starwal --version` exits 0; `starwal check` with no environment exits 2;
#   5. `starwal run` with no Postgres listening: the control server answers and the image's
#      HEALTHCHECK command reports unhealthy (`podman healthcheck run` exits 1);
#   6. `starwal run` against a throwaway Postgres (a table with rows) and starrocks-sim, the PG
#      password and control token from files mounted under /run/secrets: the snapshot's rows and
#      rows inserted afterwards arrive in the sim (read back with the mariadb client), then the
#      HEALTHCHECK reports healthy (exit 0);
#   7. `podman stop` (SIGTERM) drains: the container exits 0 and its log shows the drain.
#
# Stand-ins, because CI reaches Debian's mirrors but no container registry:
#   - docker.io/library/debian:bookworm-slim: `debootstrap --variant=minbase bookworm` with the real
#     image's apt sources (bookworm, -updates, -security), imported with `podman import`;
#   - docker.io/library/rust:1-slim-bookworm (full build only): that base plus bookworm-security's
#     rustc-web/cargo-web, gcc and libc6-dev, CARGO_HOME=/usr/local/cargo as in the real image, and
#     this host's CA bundle added to its trust store (crates.io may sit behind a TLS proxy here).
#   They live in podman storage of their own ($STARWAL_CONTAINER_DIR/storage), never in the host's
#   default storage, and are reused by later runs, as are the build's cache mounts
#   ($STARWAL_CONTAINER_DIR/tmp); `rm -rf` that directory to start over.
#   podman runs with runc (crun cannot set RLIMIT_NOFILE/NPROC on these hosts) and the ulimits
#   of a containers.conf of its own (CONTAINERS_CONF; nothing under /etc is changed).
#
# Environment:
#   STARWAL_CONTAINER_DIR=target/container-test   podman storage, stand-ins, build context
#   STARWAL_CONTAINER_KEEP=1                       keep the run's temp dir (Postgres data, secrets)
#   STARWAL_CONTAINER_PGBIN=/path/to/bin           Postgres server binaries (default: newest
#                                                  /usr/lib/postgresql/*/bin)
#   STARWAL_CONTAINER_MIRROR=http://deb.debian.org/debian   debootstrap's mirror
#
# Logs of the last run (build, podman, the agent's container, sim, Postgres): $STARWAL_CONTAINER_DIR/logs.
# Exit status: 0 when every check passed, 1 otherwise, 2 for bad arguments.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${STARWAL_CONTAINER_DIR:-$REPO/target/container-test}
KEEP=${STARWAL_CONTAINER_KEEP:-0}
MIRROR=${STARWAL_CONTAINER_MIRROR:-http://deb.debian.org/debian}
IMAGE=localhost/starwal:container-test
BASE_IMAGE=docker.io/library/debian:bookworm-slim
RUST_IMAGE=docker.io/library/rust:1-slim-bookworm
ROWS=1000 # rows in the source table before the agent starts (the snapshot copies them)
LIVE_ROWS=10 # rows inserted while it streams
PG_PASSWORD=container-test-pg
SR_PASSWORD=container-test-sr
CONTROL_TOKEN=container-test-token
SR_DATABASE=analytics

usage() { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
BINARY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) [ $# -ge 2 ] || { usage >&2; exit 2; }; BINARY=$2; shift 2 ;;
    --binary=*) BINARY=${1#--binary=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac

T0=$SECONDS
step() { printf '==> [%3ds] %s\n' $((SECONDS - T0)) "$*"; }
info() { printf '    %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (rootful podman; Postgres runs as user postgres)"
for cmd in podman runc debootstrap; do
  command -v "$cmd" >/dev/null 2>&1 || fail "no $cmd: apt-get install podman runc debootstrap"
done
MYSQL=$(command -v mariadb || command -v mysql || true)
[ -n "$MYSQL" ] || fail "no mariadb client: apt-get install mariadb-client"
PGBIN=${STARWAL_CONTAINER_PGBIN:-$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  fail "no Postgres server binaries: apt-get install postgresql (or set STARWAL_CONTAINER_PGBIN)"
fi
if [ -x "$PGBIN/psql" ]; then PSQL="$PGBIN/psql"; else PSQL=$(command -v psql) || fail "no psql"; fi
if [ -n "$BINARY" ]; then
  [ -x "$BINARY" ] || fail "--binary $BINARY: not an executable file"
fi
id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres

LOGS="$DIR/logs"
rm -rf "$LOGS"
mkdir -p "$DIR" "$LOGS"
# runc, not crun; ulimits podman can set here; no systemd to talk to (cgroupfs, events in a file).
cat >"$DIR/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF="$DIR/containers.conf"
# TMPDIR: where buildah keeps the Dockerfile's cache mounts (cargo registry and target dir, ~1.7 GB
# after a build), so that they stay here too instead of in /var/tmp.
mkdir -p "$DIR/tmp"
pm() { TMPDIR="$DIR/tmp" podman --root "$DIR/storage" --runroot "$DIR/run" "$@"; }

# ------------------------------------------------------------------------------------ cleanup
WORK=$(mktemp -d /tmp/starwal-container-test.XXXXXX)
chmod 755 "$WORK" # postgres and the container's user 10001 read inside it
CONTAINERS=()
SIM_PID=""
PG_STARTED=0
PGDATA="$WORK/pg/data"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local c
  for c in "${CONTAINERS[@]}"; do
    if [ "$rc" != 0 ] && pm container exists "$c" 2>/dev/null; then
      printf -- '--- last lines of container %s ---\n' "$c" >&2
      pm logs --tail 30 "$c" >&2 2>&1 || true
    fi
    pm rm -f -t 0 "$c" >/dev/null 2>>"$LOGS/podman.log" || true
  done
  if [ -n "$SIM_PID" ]; then kill -TERM "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  if [ "$PG_STARTED" = 1 ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [ "$KEEP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A TCP port on 127.0.0.1 that nothing listens on, below Linux's ephemeral range.
USED_PORTS=" "
free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 12000))
    [[ "$USED_PORTS" == *" $port "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      USED_PORTS+="$port "
      echo "$port"
      return 0
    fi
  done
  fail "no free TCP port found"
}

# ------------------------------------------------------------------------------- 1. the image
info "podman $(pm version --format '{{.Client.Version}}'), $(runc --version | head -n 1), storage $DIR/storage"
if pm image exists "$BASE_IMAGE"; then
  info "$BASE_IMAGE: the stand-in made by an earlier run"
else
  step "stand-in $BASE_IMAGE: debootstrap --variant=minbase bookworm $MIRROR"
  rootfs="$DIR/rootfs"
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$LOGS/debootstrap.log" 2>&1 \
    || { tail -n 30 "$LOGS/debootstrap.log" >&2; fail "debootstrap"; }
  # The real image's apt sources and no package caches (its Dockerfile's own cleanup).
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | pm import --change 'CMD ["bash"]' \
    --change 'LABEL org.starwal.stand-in="debootstrap --variant=minbase bookworm"' \
    - "$BASE_IMAGE" >"$LOGS/import.log" 2>&1 || { cat "$LOGS/import.log" >&2; fail "podman import"; }
  rm -rf "$rootfs"
  info "imported ($(pm image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"
fi

build_flags=(--pull=never --format docker --network host --tag "$IMAGE" --file "$REPO/Dockerfile")
if [ -n "$BINARY" ]; then
  ctx="$DIR/prebuilt-context"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  install -m 0755 "$BINARY" "$ctx/starwal"
  strip "$ctx/starwal" 2>/dev/null || true # as the build stage does; the image works either way
  step "podman build --target prebuilt from $BINARY (log: $LOGS/build.log)"
  pm build "${build_flags[@]}" --target prebuilt "$ctx" >"$LOGS/build.log" 2>&1 \
    || { tail -n 40 "$LOGS/build.log" >&2; fail "podman build --target prebuilt"; }
else
  if pm image exists "$RUST_IMAGE"; then
    info "$RUST_IMAGE: the stand-in made by an earlier run"
  else
    step "stand-in $RUST_IMAGE: the base + bookworm-security's rustc-web/cargo-web"
    rctx="$DIR/rust-context"
    rm -rf "$rctx"
    mkdir -p "$rctx"
    cp /etc/ssl/certs/ca-certificates.crt "$rctx/host-ca.crt"
    cat >"$rctx/Containerfile" <<EOF
FROM $BASE_IMAGE
COPY host-ca.crt /usr/local/share/ca-certificates/host-ca.crt
RUN apt-get update \\
 && apt-get install -y --no-install-recommends rustc-web cargo-web gcc libc6-dev ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
ENV CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL org.starwal.stand-in="bookworm-security rustc-web/cargo-web"
EOF
    pm build --pull=never --format docker --network host --tag "$RUST_IMAGE" "$rctx" \
      >"$LOGS/rust-image.log" 2>&1 || { tail -n 30 "$LOGS/rust-image.log" >&2; fail "rust stand-in"; }
    info "$(pm run --rm --network host "$RUST_IMAGE" rustc --version)"
  fi
  step "podman build $REPO: the whole Dockerfile (log: $LOGS/build.log)"
  pm build "${build_flags[@]}" "$REPO" >"$LOGS/build.log" 2>&1 \
    || { tail -n 40 "$LOGS/build.log" >&2; fail "podman build"; }
fi
info "built $IMAGE ($(pm image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1 / 1e6}'))"

# ------------------------------------------------------------------- 2.–4. user, --version, check
user=$(pm image inspect --format '{{.Config.User}}' "$IMAGE")
[ "$user" = "10001:10001" ] || fail "image user is '$user', expected 10001:10001"
health=$(pm image inspect --format '{{.Config.Healthcheck}}' "$IMAGE")
if [ -z "$health" ] || [ "$health" = "<nil>" ]; then
  fail "the image has no HEALTHCHECK (built without --format docker?)"
fi
run_flags=(--read-only --read-only-tmpfs=false --network host)
# One-shot containers need no health check (and podman would try to schedule it, see below).
once() { pm run --rm --no-healthcheck "${run_flags[@]}" "$@"; }
uid=$(once --entrypoint /usr/bin/id "$IMAGE" -u)
[ "$uid" = 10001 ] || fail "the container runs as uid $uid, expected 10001"
info "user 10001:10001 (id -u in the container: $uid), HEALTHCHECK declared"

step "starwal --version; starwal check with no environment"
version=$(once "$IMAGE" --version) || fail "starwal --version failed"
[[ "$version" == starwal\ * ]] || fail "unexpected --version output: $version"
info "$version"
rc=0
out=$(once "$IMAGE" check 2>&1) || rc=$?
[ "$rc" = 2 ] || { echo "$out" >&2; fail "starwal check with no environment exited $rc, expected 2"; }
info "check exited 2: $(head -n 1 <<<"$out")"

# ------------------------------------------------------------- 5. unhealthy without Postgres
# HEALTHCHECK = `starwal status --json` reports serving; STARWAL_CONTROL_URL tells `status`
# where the control server listens (not the image's default port: the host network is shared).
control_env() {
  local port=$1
  echo "-e STARWAL_CONTROL_ADDR=127.0.0.1:$port -e STARWAL_CONTROL_URL=http://127.0.0.1:$port"
}
# Runs the image's HEALTHCHECK command in container $1 now (`podman healthcheck run`: exit 0 and
# nothing printed when healthy, 1 and "unhealthy" when not). podman schedules it through systemd
# timers, which these hosts lack: its "unable to get systemd connection" errors from run, stop and
# rm go to podman.log; running the check by hand is unaffected.
healthcheck() { pm healthcheck run "$1" >/dev/null 2>>"$LOGS/podman.log"; }
# Waits until the control server in container $1 answers `starwal status` (30 s).
wait_control() {
  for _ in $(seq 1 60); do
    pm exec "$1" /usr/local/bin/starwal status --json >/dev/null 2>&1 && return 0
    [ "$(pm inspect --format '{{.State.Running}}' "$1")" = true ] || fail "container $1 exited"
    sleep 0.5
  done
  fail "the control server in $1 did not answer within 30 s"
}

dead_port=$(free_port)
cport=$(free_port)
mport=$(free_port)
step "starwal run with no Postgres listening (127.0.0.1:$dead_port): HEALTHCHECK must report unhealthy"
CONTAINERS+=(starwal-ct-nopg)
# shellcheck disable=SC2046 # control_env's words are separate flags
pm run -d --name starwal-ct-nopg "${run_flags[@]}" $(control_env "$cport") \
  -e STARWAL_METRICS_ADDR="127.0.0.1:$mport" \
  -e STARWAL_PG_URL="postgres://starwal@127.0.0.1:$dead_port/app?sslmode=disable" \
  -e STARWAL_TABLES=public.items \
  -e STARWAL_STARROCKS_URL="http://127.0.0.1:$dead_port" \
  -e STARWAL_STARROCKS_PASSWORD="$SR_PASSWORD" \
  -e STARWAL_STARROCKS_DATABASE="$SR_DATABASE" \
  "$IMAGE" >/dev/null 2>>"$LOGS/podman.log"
wait_control starwal-ct-nopg
serving=$(pm exec starwal-ct-nopg /usr/local/bin/starwal status --json | grep -Eo '"serving": ?[a-z]+' || true)
if healthcheck starwal-ct-nopg; then fail "HEALTHCHECK reported healthy without Postgres"; fi
info "control server answers ($serving); podman healthcheck run: unhealthy (exit 1)"
pm rm -f -t 0 starwal-ct-nopg >/dev/null 2>>"$LOGS/podman.log"

# ------------------------------------------------------------------- 6. Postgres + sim + rows
step "throwaway Postgres ($("$PGBIN/postgres" --version)) and starrocks-sim on 127.0.0.1"
SIM=$REPO/target/debug/starrocks-sim
if [ ! -x "$SIM" ]; then
  info "building starrocks-sim (cargo build -p starrocks-sim)"
  (cd "$REPO" && cargo build -q -p starrocks-sim --bin starrocks-sim) || fail "cargo build -p starrocks-sim"
fi
mkdir -p "$WORK/pg"
chown postgres "$WORK/pg"
chmod 700 "$WORK/pg"
install -o postgres -m 0644 /dev/null "$LOGS/postgres.log" # pg_ctl writes it as postgres
pgport=$(free_port)
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C \
  --no-sync >"$LOGS/initdb.log" 2>&1 || { cat "$LOGS/initdb.log" >&2; fail "initdb"; }
runuser -u postgres -- tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $pgport
unix_socket_directories = '$WORK/pg'
wal_level = logical
max_replication_slots = 4
max_wal_senders = 4
fsync = off
EOF
runuser -u postgres -- tee "$PGDATA/pg_hba.conf" >/dev/null <<EOF
local all all                trust
host  all all 127.0.0.1/32   scram-sha-256
EOF
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -w -t 60 start \
  >/dev/null || { cat "$LOGS/postgres.log" >&2; fail "postgres did not start"; }
PG_STARTED=1
runuser -u postgres -- "$PSQL" -h "$WORK/pg" -p "$pgport" -U postgres -d postgres -X -q \
  -v ON_ERROR_STOP=1 <<EOF
CREATE ROLE starwal LOGIN REPLICATION PASSWORD '$PG_PASSWORD';
CREATE DATABASE app OWNER starwal;
EOF
sql() {
  PGPASSWORD=$PG_PASSWORD "$PSQL" -h 127.0.0.1 -p "$pgport" -U starwal -d app -X -q -At \
    -v ON_ERROR_STOP=1 "$@"
}
sql -c "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2));
        INSERT INTO items SELECT g, 'item ' || g, g * 1.25 FROM generate_series(1, $ROWS) g;"
info "Postgres 127.0.0.1:$pgport: database app, table public.items with $ROWS rows"

: >"$LOGS/sim.log" # exists before the sim's first line, for the wait below
"$SIM" --fe-http 127.0.0.1:0 --be-http 127.0.0.1:0 --mysql 127.0.0.1:0 --admin 127.0.0.1:0 \
  --user root --password "$SR_PASSWORD" >"$LOGS/sim.log" 2>&1 &
SIM_PID=$!
for _ in $(seq 1 100); do
  grep -q '^starrocks-sim ready' "$LOGS/sim.log" && break
  kill -0 "$SIM_PID" 2>/dev/null || { cat "$LOGS/sim.log" >&2; fail "starrocks-sim exited"; }
  sleep 0.1
done
ready=$(grep '^starrocks-sim ready' "$LOGS/sim.log") || fail "starrocks-sim did not report ready"
sim_addr() { tr ' ' '\n' <<<"$ready" | sed -n "s/^$1=//p"; }
SIM_FE=$(sim_addr fe_http)
SIM_MYSQL=$(sim_addr mysql)
info "starrocks-sim: FE HTTP $SIM_FE, MySQL protocol $SIM_MYSQL"
target_count() {
  "$MYSQL" -h "${SIM_MYSQL%:*}" -P "${SIM_MYSQL##*:}" -u root --password="$SR_PASSWORD" -N -B \
    -e "SELECT count(*) FROM $SR_DATABASE.items" 2>/dev/null || echo 0
}
# Waits up to $2 s until the sim holds $1 rows.
wait_rows() {
  local want=$1 deadline=$((SECONDS + $2)) have
  while true; do
    have=$(target_count)
    [ "$have" = "$want" ] && return 0
    [ "$(pm inspect --format '{{.State.Running}}' starwal-ct)" = true ] || fail "the agent's container exited"
    [ "$SECONDS" -lt "$deadline" ] || fail "the sim holds $have rows of public.items after $2 s, expected $want"
    sleep 0.5
  done
}

# Secrets as files, the Docker convention; readable by the container's user 10001.
mkdir -p "$WORK/secrets"
printf '%s\n' "$PG_PASSWORD" >"$WORK/secrets/pg_password"
printf '%s\n' "$CONTROL_TOKEN" >"$WORK/secrets/control_token"
chmod 755 "$WORK/secrets"
chmod 644 "$WORK/secrets"/*

cport=$(free_port)
mport=$(free_port)
step "starwal run in the container against them (control 127.0.0.1:$cport)"
CONTAINERS+=(starwal-ct)
# shellcheck disable=SC2046
pm run -d --name starwal-ct "${run_flags[@]}" $(control_env "$cport") \
  -v "$WORK/secrets:/run/secrets:ro" \
  -e STARWAL_METRICS_ADDR="127.0.0.1:$mport" \
  -e STARWAL_PG_URL="postgres://starwal@127.0.0.1:$pgport/app?sslmode=disable" \
  -e STARWAL_PG_PASSWORD_FILE=/run/secrets/pg_password \
  -e STARWAL_CONTROL_TOKEN_FILE=/run/secrets/control_token \
  -e STARWAL_TABLES=public.items \
  -e STARWAL_STARROCKS_URL="http://$SIM_FE" \
  -e STARWAL_STARROCKS_MYSQL="$SIM_MYSQL" \
  -e STARWAL_STARROCKS_USER=root \
  -e STARWAL_STARROCKS_PASSWORD="$SR_PASSWORD" \
  -e STARWAL_STARROCKS_DATABASE="$SR_DATABASE" \
  -e STARWAL_FLUSH_INTERVAL_MS=200 \
  -e STARWAL_SHUTDOWN_TIMEOUT_S=30 \
  "$IMAGE" >/dev/null 2>>"$LOGS/podman.log"
wait_rows "$ROWS" 120
info "the snapshot's $ROWS rows are in $SR_DATABASE.items"
sql -c "INSERT INTO items SELECT g, 'live ' || g, g FROM generate_series($ROWS + 1, $ROWS + $LIVE_ROWS) g;"
wait_rows $((ROWS + LIVE_ROWS)) 60
info "$LIVE_ROWS rows inserted afterwards arrived too ($((ROWS + LIVE_ROWS)) in all)"
healthcheck starwal-ct || fail "HEALTHCHECK reported unhealthy while the agent streams"
state=$(pm inspect --format '{{.State.Health.Status}}' starwal-ct)
[ "$state" = healthy ] || fail "podman records the container as '$state' after a passing check"
info "podman healthcheck run: healthy; podman inspect: $state ($(pm exec starwal-ct \
  /usr/local/bin/starwal status --json | grep -Eo '"serving": ?[a-z]+'))"

# ------------------------------------------------------------------------------- 7. stop, drain
step "podman stop -t 45 starwal-ct (SIGTERM: drain, exit 0)"
pm stop -t 45 starwal-ct >/dev/null 2>>"$LOGS/podman.log"
code=$(pm inspect --format '{{.State.ExitCode}}' starwal-ct)
pm logs starwal-ct >"$LOGS/starwal.log" 2>&1
grep -q 'signal received: draining' "$LOGS/starwal.log" \
  || fail "no drain in the container's log ($LOGS/starwal.log)"
[ "$code" = 0 ] || fail "the container exited $code after SIGTERM, expected 0"
# The drain told Postgres where it got to: the slot holds the flush position the agent logged
# when it closed the stream, at or past the last LSN it confirmed as loaded.
flushed=$(grep -o 'replication stream closed flushed=[0-9A-F/]*' "$LOGS/starwal.log" | tail -n 1 | cut -d= -f2)
confirmed=$(grep -o 'stopped confirmed=[0-9A-F/]*' "$LOGS/starwal.log" | tail -n 1 | cut -d= -f2)
if [ -z "$flushed" ] || [ -z "$confirmed" ]; then
  fail "no 'replication stream closed flushed=' or 'stopped confirmed=' line in the log"
fi
# Read once the walsender is gone, i.e. has processed the agent's last status update.
for _ in $(seq 1 20); do
  [ "$(sql -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'starwal'")" = f ] && break
  sleep 0.5
done
slot_lsn=$(sql -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'starwal'")
past=$(sql -c "SELECT '$slot_lsn'::pg_lsn >= '$confirmed'::pg_lsn")
if [ "$slot_lsn" != "$flushed" ] || [ "$past" != t ]; then
  fail "slot starwal: confirmed_flush_lsn $slot_lsn, but the log says flushed=$flushed confirmed=$confirmed"
fi
info "exit 0; log: $(grep -m1 'signal received: draining' "$LOGS/starwal.log" | cut -c1-100)"
info "last line: $(tail -n 1 "$LOGS/starwal.log" | cut -c1-140)"
info "slot starwal: confirmed_flush_lsn $slot_lsn = the logged flush position (confirmed=$confirmed)"

step "OK: image built, ran as 10001 read-only, healthy only while streaming, drained on stop"
