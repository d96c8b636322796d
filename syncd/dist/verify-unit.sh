#!/usr/bin/env bash
# Checks syncd.service with `systemd-analyze verify` (CI runs this when systemd-analyze exists).
# The unit names /usr/local/bin/syncd; verify resolves ExecStart, so point it at a stand-in.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
printf '#!/bin/sh\nexit 0\n' > "$tmp/bin/syncd"
chmod +x "$tmp/bin/syncd"
sed "s#/usr/local/bin/syncd#$tmp/bin/syncd#" "$here/syncd.service" > "$tmp/syncd.service"
output="$(systemd-analyze verify "$tmp/syncd.service" 2>&1 || true)"
# Ignore complaints about the host (no systemd running in a container, missing credentials files).
problems="$(printf '%s\n' "$output" | grep -v -E "^$|Failed to load|Cannot|credential|/etc/syncd|System has not been booted|Failed to connect|Running in chroot" || true)"
if [ -n "$problems" ]; then
  printf 'systemd-analyze verify found problems:\n%s\n' "$problems"
  exit 1
fi
echo "syncd.service: systemd-analyze verify ok"
