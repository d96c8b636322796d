#!/usr/bin/env bash
# The SDK tried as a user would: a fresh crate outside the workspace depends on `superoffice` by
# path (default features), builds offline with SUPEROFFICE_OPENAPI set, and runs a GET and a
# typed list against the emulator binary. Run from the workspace root (`.ci/run` does).
set -euo pipefail
root="$PWD"
target="${CARGO_TARGET_DIR:-$root/target}"   # share the workspace's target dir: fewer rebuilds
spec="$(cargo xtask spec show | sed -n 's/^spec: *\(.*\) (found via .*/\1/p')"
[ -f "$spec" ] || { echo "no spec found (cargo xtask spec show)" >&2; exit 1; }
spec="$(cd "$(dirname "$spec")" && pwd)/$(basename "$spec")"

fresh="$(mktemp -d)"
emu_pid=""
cleanup() { [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null; rm -rf "$fresh"; }
trap cleanup EXIT

mkdir -p "$fresh/src"
sed "s#@SDK@#$root/sdk#" .ci/fresh-dependent/Cargo.toml.in > "$fresh/Cargo.toml"
cp .ci/fresh-dependent/main.rs "$fresh/src/main.rs"
cp Cargo.lock "$fresh/Cargo.lock"   # the workspace's pinned versions; cargo trims the rest
(cd "$fresh" && SUPEROFFICE_OPENAPI="$spec" CARGO_TARGET_DIR="$target/fresh-dependent" \
  cargo build --offline --quiet)

cargo build --quiet -p emulator --bin superoffice-emulator
"$target/debug/superoffice-emulator" --port 0 > "$fresh/emulator.out" 2>&1 &
emu_pid=$!
for _ in $(seq 1 100); do
  grep -q '^access token:' "$fresh/emulator.out" && break
  sleep 0.1
done
field() { sed -n "s/^$1: *//p" "$fresh/emulator.out" | head -n 1; }
SO_BASE_URL="$(field 'login host')" SO_TENANT_URL="$(field 'tenant')" \
  SO_ACCESS_TOKEN="$(field 'access token')" \
  "$target/fresh-dependent/debug/fresh-dependent"
