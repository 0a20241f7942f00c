#!/usr/bin/env bash
# Makes this checkout ready to run: the Debian tools the tests and the demo use, node_modules,
# and a fresh build. Idempotent and quick when everything is already there; `npm test` and
# `npm run demo` call it first, and so does CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
declare -A NEED=(
  [nginx]=nginx                 # nginx -t on rendered sites
  [systemd-analyze]=systemd     # systemd-analyze verify on rendered units
  [openssl]=openssl             # placeholder certificates for nginx -t
  [tmux]=tmux                   # drives `stack init` in a real terminal in the tests
  [curl]=curl                   # HTTP requests to the sandbox servers in the tests
  [ssh]=openssh-client          # ssh -G (~/.ssh/config), ssh-keygen for sandbox keys
  [systemd-nspawn]=systemd-container   # sandbox servers
  [debootstrap]=debootstrap            # their root filesystem
  [ip]=iproute2                        # their network
  [zstd]=zstd
  [pebble]=pebble                      # an ACME CA (and pebble-challtestsrv) for Let's Encrypt tests
  [testssl]=testssl.sh                 # TLS scanners run against the deployed HTTPS site
  [sslscan]=sslscan
  [shellcheck]=shellcheck              # the remote shell library is checked by the unit tests
  [dash]=dash                          # and run under Debian's /bin/sh, as on servers
  [ansible-playbook]=ansible-core      # runs what `stack export ansible` writes, in the tests and bench/
)
# file -> Debian package that provides it: sandboxes run Debian 13 (trixie) too, which needs a
# debootstrap that knows the suite and the archive keys that sign it (Debian 12 has both in its
# current point release; an older install gets them by upgrading these two).
declare -A NEED_FILE=(
  [/usr/share/debootstrap/scripts/trixie]=debootstrap
  [/usr/share/keyrings/debian-archive-trixie-automatic.gpg]=debian-archive-keyring
)
missing=()
for cmd in "${!NEED[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}"); done
for file in "${!NEED_FILE[@]}"; do [ -e "$file" ] || missing+=("${NEED_FILE[$file]}"); done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing tools; install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Installing nginx must not start it on this machine.
  created_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && created_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$created_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npx tsc -p tsconfig.json
