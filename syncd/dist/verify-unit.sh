#!/usr/bin/env bash
# Checks syncd.service (and the drop-ins INSTALL.md installs) and the fleet template
# syncd@.service (as the instance syncd@verify.service) with `systemd-analyze verify`.
# Fails when systemd-analyze exits non-zero OR prints anything at all: it reports unknown keys
# and bad values as warnings with exit status 0, so its output is never filtered here.
#
#   verify-unit.sh                 the unit in this directory, ExecStart= pointed at a stand-in
#                                  (`syncd` is not installed yet; verify checks the command exists)
#   verify-unit.sh --installed     the unit as installed (`systemd-analyze verify syncd.service`
#                                  from the unit search path, /usr/bin/syncd must exist)
#
# Needs systemd-analyze (Debian: package `systemd`). It works without systemd running as PID 1.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v systemd-analyze >/dev/null || { echo "verify-unit.sh: systemd-analyze is missing (apt-get install systemd)" >&2; exit 1; }

check() {
  local output status=0
  output="$(systemd-analyze verify "$@" 2>&1)" || status=$?
  if [ "$status" -ne 0 ] || [ -n "$output" ]; then
    printf 'systemd-analyze verify %s failed (exit status %s):\n%s\n' "$*" "$status" "$output" >&2
    exit 1
  fi
}

if [ "${1:-}" = "--installed" ]; then
  check syncd.service
  echo "syncd.service (installed): systemd-analyze verify ok"
  if [ -e /usr/lib/systemd/system/syncd@.service ]; then
    check syncd@verify.service
    echo "syncd@verify.service (installed): systemd-analyze verify ok"
  fi
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/syncd.service.d"
printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/syncd"
chmod +x "$tmp/bin/syncd"
sed "s#^ExecStart=/usr/bin/syncd #ExecStart=$tmp/bin/syncd #" "$here/syncd.service" > "$tmp/syncd.service"
grep -q "^ExecStart=$tmp/bin/syncd " "$tmp/syncd.service" || { echo "verify-unit.sh: ExecStart= is not /usr/bin/syncd" >&2; exit 1; }
check "$tmp/syncd.service"
# With every optional drop-in at once.
cp "$here"/dropins/*.conf "$tmp/syncd.service.d/"
check "$tmp/syncd.service"
echo "syncd.service (+ $(cd "$here/dropins" && echo *.conf)): systemd-analyze verify ok"

# The template, as an instance (so %i resolves), with and without the drop-ins.
mkdir -p "$tmp/fleet/syncd@.service.d"
sed "s#^ExecStart=/usr/bin/syncd #ExecStart=$tmp/bin/syncd #" "$here/syncd@.service" > "$tmp/fleet/syncd@.service"
grep -q "^ExecStart=$tmp/bin/syncd --config /etc/syncd/%i.toml run$" "$tmp/fleet/syncd@.service" || { echo "verify-unit.sh: the template's ExecStart= is not /usr/bin/syncd --config /etc/syncd/%i.toml run" >&2; exit 1; }
grep -q "^StateDirectory=syncd/%i$" "$tmp/fleet/syncd@.service" || { echo "verify-unit.sh: the template has no per-instance StateDirectory=" >&2; exit 1; }
ln -s "syncd@.service" "$tmp/fleet/syncd@verify.service"
check "$tmp/fleet/syncd@verify.service"
cp "$here"/dropins/*.conf "$tmp/fleet/syncd@.service.d/"
check "$tmp/fleet/syncd@verify.service"
echo "syncd@.service (as syncd@verify.service, + drop-ins): systemd-analyze verify ok"
