#!/usr/bin/env bash
# Installs what the network-lab tests (test/lab) need: `ip` (iproute2) and `nft` (nftables); and
# what the dashboard tests (test/e2e) and bench/dashboard.ts need: Debian's chromium at
# /usr/bin/chromium; and, with --bench (npm run bench), what bench/mosquitto.ts compares shoal
# with: the Mosquitto broker and its command-line clients. The bench starts its own broker on
# 127.0.0.1 on a random port; nothing here configures or starts one.
#
# Idempotent and safe in CI: it does nothing when not root (the lab needs root anyway) or when
# everything is there; it runs `apt-get update` only when the package lists are missing or too
# old to install from. It always exits 0: when something cannot be installed it says why, and the
# tests that need it then skip with the reason printed.
set -uo pipefail

say() { echo "install-test-deps: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "not root: nothing installed (the network-lab tests need root and will be skipped; the dashboard tests are skipped without /usr/bin/chromium; the bench needs mosquitto)"
  exit 0
fi

export PATH="$PATH:/usr/sbin:/sbin"
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# Mosquitto only for the benchmark (`--bench`): the tests never need it.
if [ "${1:-}" = "--bench" ]; then
  command -v mosquitto >/dev/null 2>&1 || missing+=(mosquitto)
  { command -v mosquitto_pub && command -v mosquitto_sub; } >/dev/null 2>&1 || missing+=(mosquitto-clients)
fi
if [ "${#missing[@]}" -eq 0 ]; then
  say "everything needed is installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get: install ${missing[*]} by hand (the tests that need them will be skipped)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y --no-install-recommends "${missing[@]}"; }

if ! compgen -G '/var/lib/apt/lists/*Packages*' >/dev/null; then
  say "no package lists yet: apt-get update"
  apt-get update || say "apt-get update failed"
fi
if ! install; then
  say "install failed; retrying after apt-get update"
  if ! { apt-get update && install; }; then
    say "could not install ${missing[*]} (the tests that need them will be skipped)"
    exit 0
  fi
fi
say "installed ${missing[*]}"
