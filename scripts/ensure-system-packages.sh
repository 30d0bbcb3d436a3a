#!/usr/bin/env bash
# Installs the Debian packages Slipway's tests and demo use, when they are missing.
# Without root or apt-get it says what is missing and carries on: the tests that
# need a missing tool skip with a reason (and fail under CI=true).
set -euo pipefail

# command -> Debian package
declare -A wanted=(
  [git]=git
  [kubectl]=kubernetes-client
  [prometheus]=prometheus
  # The web console's end-to-end tests drive it headless (Playwright, executable_path).
  [chromium]=chromium
)

missing=()
for cmd in "${!wanted[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "missing Debian packages (install them as root): ${missing[*]}" >&2
fi
