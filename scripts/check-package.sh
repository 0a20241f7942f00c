#!/usr/bin/env bash
# Proves the package as a user gets it: `npm pack`, installed into a fresh prefix, then run from
# another directory: `stack --version`, `stack render` of the example, and `npx` on the tarball.
# Anything the CLI needs at run time (templates, roles, schema, the remote shell files) that
# the tarball lacks fails here, not on a user's machine. Cleans up what it made.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

version=$(node -p 'require("./package.json").version')
tarball="$work/$(npm pack --silent --pack-destination "$work" | tail -n 1)"
# The remote shell library is read only when a server is contacted: check it is there by name.
# (The listing goes to a file first: grep -q stops reading early, and tar's broken pipe would
# then fail the check under pipefail.)
tar -tzf "$tarball" > "$work/contents"
for f in src/remote/sh/*.sh; do
  grep -qx "package/$f" "$work/contents" || { echo "check-package: $f is not in the package" >&2; exit 1; }
done
npm install --silent --no-audit --no-fund --prefer-offline -g --prefix "$work/prefix" "$tarball"
stack="$work/prefix/bin/stack"

got=$("$stack" --version)
[ "$got" = "$version" ] || { echo "check-package: stack --version said '$got', not $version" >&2; exit 1; }

# From elsewhere, on a copy of the example: nothing may be read from the repository.
mkdir "$work/project"
cp -r "$root/example" "$work/project/example"
cp "$root/inventory.example.yml" "$work/project/inventory.yml"
(cd "$work/project" && "$stack" render > "$work/render.out")
grep -q 'server_name' "$work/render.out" || { echo 'check-package: stack render printed no nginx site' >&2; exit 1; }

# `npx stack-deploy ...` once published; here the same thing on the tarball.
got=$(cd "$work/project" && npx --yes --prefer-offline --package "$tarball" stack --version)
[ "$got" = "$version" ] || { echo "check-package: npx on the tarball said '$got', not $version" >&2; exit 1; }

echo "package ok: $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB) installs, runs stack --version, render and npx"
