#!/usr/bin/env bash
# The quick start's main command (`npm run demo`): on a fresh Debian machine, as root, deploy the
# example app to a throwaway local server and show it answering. Safe to run again: the demo
# server is replaced by a pristine one each time.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh

stack() { node bin/stack.js "$@"; }
INVENTORY=inventory.demo.yml     # a copy of the example, pointed at the sandbox (git ignores it)
NAME=demo

echo "== a throwaway server (the first run builds its Debian root filesystem: about a minute and a half)"
stack sandbox down "$NAME" >/dev/null 2>&1 || true
cp inventory.example.yml "$INVENTORY"
stack sandbox up "$NAME" --write-env sandbox -i "$INVENTORY"
ADDRESS=$(sed -n 's/^ *- address: \(169\.254\.[0-9.]*\).*/\1/p' "$INVENTORY" | head -n1)

# The example app declares one secret; the demo makes up a value. Real projects keep theirs in
# the environment or in .stack/secrets.<env> (mode 600).
export SECRET_KEY
SECRET_KEY=$(head -c 24 /dev/urandom | base64)

echo; echo "== stack setup sandbox: packages, the app's user, directories, unit"
stack -i "$INVENTORY" setup sandbox
echo; echo "== stack deploy sandbox --dry-run: what the deploy would change (nothing is touched)"
stack -i "$INVENTORY" deploy sandbox --dry-run
echo; echo "== stack deploy sandbox"
stack -i "$INVENTORY" deploy sandbox
echo; echo "== the app, through nginx on the sandbox"
curl -sS "http://$ADDRESS/health"; echo
curl -sS "http://$ADDRESS/" | sed 's/<[^>]*>/ /g'; echo
echo; echo "== a second deploy finds nothing to do"
stack -i "$INVENTORY" deploy sandbox
cat <<MSG

The example app runs at http://$ADDRESS/ on sandbox "$NAME".
  look around:  ssh -i /var/lib/stack/sandbox/id_ed25519 -o UserKnownHostsFile=/run/stack/sandboxes/$NAME/known_hosts deploy@$ADDRESS
  stop it:      node bin/stack.js sandbox down $NAME
MSG
