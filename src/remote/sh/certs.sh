# Let's Encrypt: the certificate is asked for with certbot's webroot method, before the new
# configuration goes live. While certbot runs, nginx must answer /.well-known/acme-challenge/
# on port 80 for every domain: the live site does for the domains it already serves; for the
# others a small stand-in server block does, removed again whatever happens.
# POSIX sh (Debian's dash); checked with `shellcheck -s sh`, run under dash by the unit tests.

# acme_answer CHALLENGES STAND_IN MARKER DOMAIN...: makes nginx answer the challenge path for
# every DOMAIN. Whether it does is asked of nginx itself, for a file only this script knows;
# for the domains it does not answer, the stand-in block (base64 on stdin, MARKER where their
# names go) is written to STAND_IN (in conf.d, read before sites-enabled) and nginx reloaded,
# and then they must answer.
acme_answer() {
  ACME_CHALLENGES=$1 ACME_STAND_IN=$2 acme_marker=$3
  shift 3
  install -d -m 0755 "$ACME_CHALLENGES"
  acme_probe=stack-probe-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s' "$acme_probe" >"$ACME_CHALLENGES/$acme_probe"
  chmod 0644 "$ACME_CHALLENGES/$acme_probe"
  base64 -d >"$TMPD/stand-in" || cert_fail 'ACME stand-in'
  acme_missing=
  for aa_domain in "$@"; do
    acme_answers "$aa_domain" || acme_missing="$acme_missing $aa_domain"
  done
  [ -n "$acme_missing" ] || return 0
  # Domains are validated names (letters, digits, dots, dashes): safe in a sed replacement.
  sed "s|$acme_marker|$acme_missing|" "$TMPD/stand-in" >"$ACME_STAND_IN"
  nginx -t -q 2>"$TMPD/nginx" || {
    cat "$TMPD/nginx" >&2
    cert_fail 'nginx -t (ACME stand-in)'
  }
  reload_nginx || cert_fail 'reload nginx'
  # The block must really answer (a custom nginx.conf might not include conf.d).
  # shellcheck disable=SC2086 # the list of missing domains, one word each
  for aa_domain in $acme_missing; do
    acme_answers "$aa_domain" || {
      echo "nginx does not answer /.well-known/acme-challenge/ for $aa_domain, even with $ACME_STAND_IN (does nginx.conf include conf.d?)" >&2
      cert_fail 'ACME stand-in'
    }
  done
}

# acme_answers DOMAIN: whether nginx serves the probe for DOMAIN on port 80.
acme_answers() {
  [ "$(curl -s --max-time 5 --resolve "$1:80:127.0.0.1" "http://$1/.well-known/acme-challenge/$acme_probe" 2>/dev/null || true)" = "$acme_probe" ]
}

# acme_cleanup: puts back what was there: no probe, no stand-in block, and nginx reloaded
# without it.
acme_cleanup() {
  rm -f "$ACME_CHALLENGES/$acme_probe"
  if [ -f "$ACME_STAND_IN" ]; then
    rm -f "$ACME_STAND_IN"
    nginx -t -q 2>/dev/null && reload_nginx
  fi
}

# cert_fail STEP
cert_fail() {
  acme_cleanup
  audit failed "$1"
  fail "$1"
}

# obtain_certificate COMMAND...: runs certbot (COMMAND), then cleans up. certbot says what went
# wrong in its last lines (the CA's answer or the connection error).
obtain_certificate() {
  if ! "$@" >"$TMPD/certbot" 2>&1; then
    grep -v '^Saving debug log' "$TMPD/certbot" | tail -n 12 >&2
    cert_fail 'obtain certificate'
  fi
  acme_cleanup
}
