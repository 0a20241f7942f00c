# Provisioning: packages, users, groups, directories, a self-signed certificate, the firewall,
# and the conversion of a server in the layout of before releases were sealed. Each function
# returns non-zero when it failed (having said why); the script names the step.
# POSIX sh (Debian's dash); checked with `shellcheck -s sh`, run under dash by the unit tests.

# install_packages PACKAGE...: a fresh server may have no package lists yet, so a failed
# install updates them once and tries again; apt's last lines say why it still failed.
install_packages() {
  if ! apt-get install -y -q --no-install-recommends "$@" >"$TMPD/apt" 2>&1; then
    apt-get update -q >>"$TMPD/apt" 2>&1
    apt-get install -y -q --no-install-recommends "$@" >>"$TMPD/apt" 2>&1 || {
      tail -n 25 "$TMPD/apt" >&2
      no_space_note /var "$TMPD/apt"
      return 1
    }
  fi
}

# make_user NAME HOME: a system user with its own group, no login and no home made for it.
make_user() {
  getent passwd "$1" >/dev/null ||
    useradd --system --user-group --home-dir "$2" --no-create-home --shell /usr/sbin/nologin "$1"
}

# join_group USER GROUP
join_group() {
  usermod -aG "$2" "$1"
}

# leave_group USER GROUP
leave_group() {
  gpasswd -d "$1" "$2" >/dev/null
}

# make_dir PATH MODE OWNER GROUP: created, or given that mode and owner.
make_dir() {
  install -d -m "$2" -o "$3" -g "$4" "$1"
}

# self_signed_cert CERT KEY SUBJECT SAN: generated once and kept: a new one on every deploy
# would break clients that pinned it. Written next to its place and renamed, so nginx never
# reads half a pair.
self_signed_cert() {
  install -d -m 0755 -o root -g root "${1%/*}"
  if [ -s "$1" ] && [ -s "$2" ]; then return 0; fi
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj "$3" -addext "subjectAltName=$4" -keyout "$2.new" -out "$1.new" >/dev/null 2>&1 || return 1
  chmod 600 "$2.new" && chmod 644 "$1.new" && mv -f "$2.new" "$2" && mv -f "$1.new" "$1"
}

# open_firewall SSH_PORT: when ufw is there, SSH, HTTP and HTTPS stay reachable through it.
open_firewall() {
  command -v ufw >/dev/null || return 0
  step "firewall: allow $1, 80 and 443/tcp"
  for of_port in "$1" 80 443; do
    ufw allow "$of_port/tcp" >/dev/null || return 1
  done
}

# seal_releases CURRENT RELEASES GROUP STATIC: runs once the directories have become root's:
# from then on the app's user cannot move anything in them, so each release can be checked and
# sealed where it is, the live one included (reading code needs no more than the group's read
# access, which sealing keeps). Fails naming the release it could not seal.
seal_releases() {
  if [ -L "$1" ]; then chown -h root:root "$1"; fi
  for sr_release in "$2"/*; do
    [ -e "$sr_release" ] || [ -L "$sr_release" ] || continue
    convert_release "$sr_release" "$3" "$4" || {
      no_space_note "$2"
      fail "seal $sr_release"
    }
  done
}

# socket_group SOCKET GROUP: the live socket file gets its new group in place: restarting the
# socket would refuse connections for a moment, and its group is all that changed.
socket_group() {
  if [ -S "$1" ]; then chgrp "$2" "$1"; fi
}
