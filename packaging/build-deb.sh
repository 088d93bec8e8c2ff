#!/usr/bin/env bash
# Builds the Debian package from [package.metadata.deb] in Cargo.toml (the table `cargo deb`
# reads), with dpkg-deb: no cargo-deb install and no release build, so CI can pack the debug
# binary it already has.
#
#   packaging/build-deb.sh [BINARY]          # default target/release/starwal
#   packaging/build-deb.sh --assets-only [BINARY]
#
# First generates, with BINARY, the man pages (starwal.1 and starwal-COMMAND.1 for each command)
# and the bash/zsh/fish completions into target/deb-assets/ (the assets the metadata names);
# --assets-only stops there (then `cargo deb` packs a release build). Otherwise stages the assets
# (the metadata's `target/release/starwal` is BINARY) and writes target/debian/
# starwal_VERSION_ARCH.deb, whose path is the last line printed. Needs python3 ≥ 3.11 (tomllib),
# dpkg-deb and gzip.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

assets_only=0
if [ "${1:-}" = --assets-only ]; then assets_only=1; shift; fi
binary=${1:-target/release/starwal}
[ -x "$binary" ] || { echo "build-deb: no executable $binary (build it first)" >&2; exit 1; }

out=target/deb-assets
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$binary" man | gzip -9n >"$out/man/starwal.1.gz"
# The commands the main page's SUBCOMMANDS section names, each with its page.
commands=$("$binary" man | awk '/^\.SH SUBCOMMANDS/ {on = 1; next} /^\.SH/ {on = 0}
  on && /^starwal\\-[a-z]+\(1\)$/ {sub(/^starwal\\-/, ""); sub(/\(1\)$/, ""); print}')
[ -n "$commands" ] || { echo "build-deb: no commands found in the man page" >&2; exit 1; }
for command in $commands; do
  "$binary" man "$command" | gzip -9n >"$out/man/starwal-$command.1.gz"
done
"$binary" completions bash >"$out/completions/starwal"
"$binary" completions zsh >"$out/completions/_starwal"
"$binary" completions fish >"$out/completions/starwal.fish"
echo "build-deb: assets in $out: $(ls "$out/man" | wc -l) man pages, 3 completion scripts" >&2
[ "$assets_only" = 0 ] || exit 0

BINARY=$binary ARCH=$(dpkg --print-architecture) python3 - <<'PY'
"""Stages [package.metadata.deb] into target/deb-stage and packs it with dpkg-deb."""
import glob, os, shutil, subprocess, sys, tomllib

with open("Cargo.toml", "rb") as f:
    package = tomllib.load(f)["package"]
deb = package["metadata"]["deb"]
stage = "target/deb-stage"
shutil.rmtree(stage, ignore_errors=True)
for source, dest, mode in deb["assets"]:
    if source == "target/release/starwal":
        source = os.environ["BINARY"]
    sources = sorted(glob.glob(source))
    if not sources:
        sys.exit(f"build-deb: asset {source} is missing")
    for path in sources:
        target = os.path.join(stage, dest + os.path.basename(path) if dest.endswith("/") else dest)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(path, target)
        os.chmod(target, int(mode, 8))

control_dir = os.path.join(stage, "DEBIAN")
os.makedirs(control_dir)
size_kib = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(stage) for f in fs) // 1024
description = "\n".join(
    [package["description"]]
    + [" " + (line or ".") for line in deb["extended-description"].splitlines()]
)
fields = {
    "Package": package["name"],
    "Version": package["version"],
    "Architecture": os.environ["ARCH"],
    "Maintainer": deb["maintainer"],
    "Installed-Size": str(size_kib),
    "Depends": deb["depends"],
    "Section": deb["section"],
    "Priority": deb["priority"],
    "Description": description,
}
with open(os.path.join(control_dir, "control"), "w") as f:
    f.writelines(f"{key}: {value}\n" for key, value in fields.items())
with open(os.path.join(control_dir, "conffiles"), "w") as f:
    f.writelines(path + "\n" for path in deb["conf-files"])
for script in ("postinst", "prerm", "postrm"):
    path = os.path.join(deb["maintainer-scripts"], script)
    if os.path.exists(path):
        shutil.copyfile(path, os.path.join(control_dir, script))
        os.chmod(os.path.join(control_dir, script), 0o755)

os.makedirs("target/debian", exist_ok=True)
output = f"target/debian/{package['name']}_{package['version']}_{os.environ['ARCH']}.deb"
subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "-z1", "--build", stage, output],
               check=True, stdout=subprocess.DEVNULL)
print(output)
PY
