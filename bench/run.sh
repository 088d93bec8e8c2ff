#!/usr/bin/env bash
# starwal benchmark suite: one entry point.
#
#   ./bench/run.sh [all|backlog|sustained|idle|snapshot|memory|bigtxn] [size]
#
# Builds the release agent (`target/release/starwal`) and the suite driver (benches/suite.rs),
# then runs the scenario(s); each starts its own throwaway Postgres cluster and starrocks-sim,
# stops everything it started, and writes bench/results/<date>-<scenario>.json and .md (the
# markdown is also printed). `size` overrides, for one scenario: backlog → BENCH_ROWS (changes
# per workload), snapshot → BENCH_SNAPSHOT_ROWS, sustained → BENCH_DURATION_S (per rate),
# idle → BENCH_IDLE_S, memory → BENCH_MEMORY_TXNS (one-row transactions), bigtxn →
# BENCH_BIGTXN_ROWS (rows of the large transaction). BENCH_MODES=table,table-streaming,...
# runs every scenario once per commit/streaming mode (issue 14). Every BENCH_*
# variable and the STARWAL_* tuning variables passed to the agents are described in
# bench/README.md.
set -euo pipefail

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# "Reproduce with": the command line with the variables the caller set.
command_line="./bench/run.sh $*"
for var in $(env | sed -n 's/^\(BENCH_[A-Z_]*\)=.*/\1/p; s/^\(STARWAL_[A-Z_]*\)=.*/\1/p' | sort -r); do
    case "$var" in BENCH_DATE | BENCH_COMMAND | BENCH_RESULTS_DIR | STARWAL_TEST_*) continue ;; esac
    command_line="$var=$(printf %q "${!var}") $command_line"
done

scenario=${1:-all}
case "$scenario" in
all | backlog | sustained | idle | snapshot | memory | bigtxn) ;;
-h | --help | help)
    usage
    exit 0
    ;;
*)
    echo "bench: unknown scenario '$scenario'" >&2
    usage >&2
    exit 2
    ;;
esac
if [ -n "${2:-}" ]; then
    case "$2" in
    *[!0-9_]*)
        echo "bench: size '$2' is not a number" >&2
        exit 2
        ;;
    esac
    case "$scenario" in
    backlog) export BENCH_ROWS=$2 ;;
    snapshot) export BENCH_SNAPSHOT_ROWS=$2 ;;
    sustained) export BENCH_DURATION_S=$2 ;;
    idle) export BENCH_IDLE_S=$2 ;;
    memory) export BENCH_MEMORY_TXNS=$2 ;;
    bigtxn) export BENCH_BIGTXN_ROWS=$2 ;;
    all)
        echo "bench: a size applies to one scenario; use BENCH_* variables with 'all'" >&2
        exit 2
        ;;
    esac
fi

# What the suite needs; say what is missing rather than fail halfway.
missing=()
command -v cargo >/dev/null || missing+=("cargo (Rust toolchain, https://rustup.rs)")
command -v openssl >/dev/null || missing+=("openssl (apt-get install openssl; the harness makes TLS material)")
pgbin=${STARWAL_TEST_PGBIN:-}
if [ -z "$pgbin" ]; then
    pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
fi
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
    missing+=("PostgreSQL server binaries: initdb (apt-get install postgresql, or STARWAL_TEST_PGBIN=/path/to/bin)")
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: missing:" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
fi
if [ "$scenario" = all ] || [ "$scenario" = backlog ]; then
    if [ ! -x "$pgbin/pg_recvlogical" ] && [ ! -x /usr/bin/pg_recvlogical ] &&
        ! command -v pg_recvlogical >/dev/null; then
        echo "bench: warning: pg_recvlogical not found (postgresql-client): the backlog runs without its comparison" >&2
    fi
fi

export BENCH_DATE=${BENCH_DATE:-$(date -u +%F)}
export BENCH_COMMAND=${BENCH_COMMAND:-$command_line}

echo "bench: building the release agent and the suite driver (cargo may wait for the build lock)" >&2
cargo build --release -p starwal --bin starwal
driver=$(cargo build --release -p starwal --bench suite --message-format=json-render-diagnostics |
    sed -n 's/.*"executable":"\([^"]*\/suite-[^"]*\)".*/\1/p' | tail -1)
if [ -z "$driver" ] || [ ! -x "$driver" ]; then
    echo "bench: could not find the built suite driver" >&2
    exit 1
fi

# The driver runs in a process group of its own (job control on) with the agents and
# pg_recvlogical it starts, so an interrupted run stops them all; the harness's watchdog then
# stops the Postgres cluster and removes its directory.
set -m
"$driver" "$scenario" &
driver_pid=$!
trap 'kill -TERM -- "-$driver_pid" 2>/dev/null || true' INT TERM
status=0
wait "$driver_pid" || status=$?
rm -rf "${TMPDIR:-/tmp}/starwal-bench-$driver_pid" # the driver's agent logs, if it was killed
exit "$status"
