#!/usr/bin/env bash
# Installs what the network-lab tests (test/lab) need: `ip` (iproute2) and `nft` (nftables).
#
# Idempotent and safe in CI: it does nothing when not root (the lab needs root anyway) or when
# both tools are there; it runs `apt-get update` only when the package lists are missing or too
# old to install from. It always exits 0: when the tools cannot be installed it says why, and the
# lab tests then skip with the reason printed.
set -uo pipefail

say() { echo "install-test-deps: $*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "not root: nothing installed (the network-lab tests need root and will be skipped)"
  exit 0
fi

export PATH="$PATH:/usr/sbin:/sbin"
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
if [ "${#missing[@]}" -eq 0 ]; then
  say "ip and nft are installed"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  say "no apt-get: install ${missing[*]} by hand (the network-lab tests will be skipped)"
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
    say "could not install ${missing[*]} (the network-lab tests will be skipped)"
    exit 0
  fi
fi
say "installed ${missing[*]}"
