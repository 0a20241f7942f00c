# The fixed library of every root script stack sends (src/apply/scripts.ts puts it in front of
# the per-plan lines). POSIX sh (Debian's dash); checked with `shellcheck -s sh` in the tests,
# and its functions are run locally under dash by test/unit/remote-sh.test.ts.

# step TEXT: progress, shown by the client as the current step.
step() { printf '@@step %s\n' "$*"; }

# fail STEP: ends the script; the client names STEP in its error.
fail() {
  printf '@@fail %s\n' "$*"
  exit 1
}

# reload_nginx: `systemctl reload nginx` returns when the signal is sent; this returns when every
# worker serving requests is a new one, so a health check right after sees the new
# configuration. A stopped nginx is started instead.
reload_nginx() {
  rn_old=$(pgrep -d ' ' -f '^nginx: worker process$' || true)
  systemctl reload-or-restart nginx || return 1
  rn_i=0
  while [ "$rn_i" -lt 100 ]; do
    rn_cur=$(pgrep -d ' ' -f '^nginx: worker process$' || true) rn_stale=
    for p in $rn_old; do
      case " $rn_cur " in *" $p "*) rn_stale=1 ;; esac
    done
    [ -z "$rn_stale" ] && [ -n "$rn_cur" ] && return 0
    rn_i=$((rn_i + 1))
    sleep 0.05
  done
}

# check_health URL RESOLVE STATUS TIMEOUT RETRIES UNIT: asks the health path through nginx
# (curl --resolve RESOLVE) until it answers STATUS, RETRIES times half a second apart; leaves
# the last answer in $code. Behind socket activation a crashing app makes requests wait rather
# than fail, so it also stops as soon as systemd has to restart UNIT (or gives up on it).
check_health() {
  code=000 ch_i=0
  ch_r0=$(systemctl show -p NRestarts --value "$6")
  while [ "$ch_i" -lt "$5" ]; do
    code=$(curl -s -k -o /dev/null -w '%{http_code}' --max-time "$4" --resolve "$2" "$1")
    [ "$code" = "$3" ] && return 0
    if [ "$(systemctl show -p NRestarts --value "$6")" != "$ch_r0" ] || systemctl is-failed --quiet "$6"; then
      code="$code (the app crashed; systemd had to restart it)"
      return 1
    fi
    ch_i=$((ch_i + 1))
    sleep 0.5
  done
  return 1
}

# The undo log: every change a script makes is remembered first, so that all of them can be put
# back. Lines are "PATH BACKUP" (restore the backup) or "PATH -" (remove what was created).
# undo_init needs $TMPD (the script's private temporary folder).
undo_init() {
  UNDO="$TMPD/undo"
  : >"$UNDO"
}

# remember PATH: keeps a copy of PATH (file or link) before it is changed. Only the first time:
# a second copy would be of what this script itself wrote.
remember() {
  while read -r rm_p _; do
    [ "$rm_p" = "$1" ] && return 0
  done <"$UNDO"
  if [ -e "$1" ] || [ -L "$1" ]; then
    cp -a "$1" "$1.stack-bak.$$" && printf '%s %s\n' "$1" "$1.stack-bak.$$" >>"$UNDO"
  else
    printf '%s -\n' "$1" >>"$UNDO"
  fi
}

# undo: puts back everything remembered, newest first.
undo() {
  tac "$UNDO" | while read -r p b; do
    if [ "$b" = - ]; then rm -f "$p"; else mv -fT "$b" "$p"; fi
  done
  : >"$UNDO"
}

# commit: the changes stay; the copies go.
commit() {
  while read -r p b; do
    [ "$b" = - ] || rm -f "$b"
  done <"$UNDO"
  rm -f "$UNDO"
}

# drop_new_release: a release that failed to go live is removed: it was never live and must
# not be rolled back to. $NEWREL is set by scripts that make one.
drop_new_release() {
  if [ -n "${NEWREL:-}" ]; then rm -rf "$NEWREL"; fi
}

# abort STEP: before any service was touched: put everything back, record, fail.
abort() {
  undo
  rm -f "$UNDO"
  drop_new_release
  audit failed "$1"
  fail "$1"
}

# put_back_live UNIT RESTART: after a service was touched: everything remembered goes back, the
# new release (if any) goes, systemd and nginx reload, and UNIT restarts when RESTART is 1.
put_back_live() {
  undo
  rm -f "$UNDO"
  drop_new_release
  systemctl daemon-reload
  if [ "$2" = 1 ]; then systemctl restart "$1" >/dev/null 2>&1 || true; fi
  reload_nginx || true
}

# switch_current CURRENT ID: points CURRENT at releases/ID atomically (a relative link keeps
# working if /srv is ever mounted elsewhere; mv -T replaces it in one rename). Remembered first.
switch_current() {
  remember "$1"
  ln -sfn "releases/$2" "$1.stack-new.$$" && mv -fT "$1.stack-new.$$" "$1"
}

# validate_nginx: the whole nginx configuration, as nginx will read it; its complaint is shown.
validate_nginx() {
  nginx -t -q 2>"$TMPD/nginx-t" || {
    cat "$TMPD/nginx-t" >&2
    return 1
  }
}
