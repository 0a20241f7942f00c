# The fixed library of every root script stack sends (src/apply/scripts.ts puts it in front of
# the per-plan lines). POSIX sh (Debian's dash); checked with `shellcheck -s sh` in the tests,
# and its functions are run locally under dash by test/unit/remote-sh.test.ts.

# Journal lines shown when the app fails to start: a Python traceback from the worker plus the
# gateway's own traceback about it easily take 30 (over 50 on Python 3.13, whose tracebacks mark
# each failing expression on a line of its own), and the worker's comes first.
JOURNAL_LINES=80

# step TEXT: progress, shown by the client as the current step.
step() { printf '@@step %s\n' "$*"; }

# fail STEP: ends the script; the client names STEP in its error.
fail() {
  printf '@@fail %s\n' "$*"
  exit 1
}

# begin_script: the first thing every root script does. Once it runs it ignores SIGHUP and
# SIGPIPE, so a dropped connection cannot stop it half way: it finishes, or rolls back, on its
# own. Its temporary files live in $TMPD, a private folder in /run (memory, root's), which
# on_exit removes on every way out.
begin_script() {
  set -u
  umask 077
  export DEBIAN_FRONTEND=noninteractive LC_ALL=C
  trap '' HUP PIPE
  TMPD=$(mktemp -d -p /run stack.XXXXXXXX) || {
    echo 'cannot make a temporary folder in /run' >&2
    exit 1
  }
}

# audit RESULT [STEP]: one JSON line in the audit log $AUDIT_FILE (nothing when it is empty):
# when, who, which command and release, how it ended and at which step. AUDIT_WHO,
# AUDIT_COMMAND and AUDIT_RELEASE arrive as JSON values; STEP is stack's own text, kept a valid
# JSON string by dropping quotes and backslashes. The log is not secret, but not everyone's.
audit() {
  [ -n "${AUDIT_FILE:-}" ] || return 0
  mkdir -p "${AUDIT_FILE%/*}" &&
    printf '{"time":"%s","who":%s,"command":%s,"release":%s,"result":"%s","step":"%s"}\n' \
      "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$AUDIT_WHO" "$AUDIT_COMMAND" "$AUDIT_RELEASE" "$1" \
      "$(printf '%s' "${2:-}" | tr -d '\\"')" >>"$AUDIT_FILE"
  chmod 0640 "$AUDIT_FILE"
}

# after_failed STEP: a step after the new release was committed failed (an after_activate
# hook): nothing is put back, so the message says what is live.
after_failed() {
  audit failed "$1"
  fail "$1 (the new release stays live)"
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

# check_health URL RESOLVE STATUS TIMEOUT RETRIES UNIT [SOCKET]: asks the health path through
# nginx (curl --resolve RESOLVE), or the gateway's unix SOCKET itself, until it answers STATUS, RETRIES times half a second apart; leaves
# the last answer in $code. Behind socket activation a crashing app makes requests wait rather
# than fail, so it also stops as soon as systemd has to restart UNIT (or gives up on it).
check_health() {
  code=000 ch_i=0
  ch_r0=$(systemctl show -p NRestarts --value "$6")
  while [ "$ch_i" -lt "$5" ]; do
    if [ -n "${7:-}" ]; then
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time "$4" --unix-socket "$7" "$1")
    else
      code=$(curl -s -k -o /dev/null -w '%{http_code}' --max-time "$4" --resolve "$2" "$1")
    fi
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

# health_answers: check_health with the plan's health check, set on one line of the script:
# HEALTH_URL HEALTH_RESOLVE HEALTH_STATUS HEALTH_TIMEOUT HEALTH_RETRIES HEALTH_UNIT (and
# HEALTH_PATH, for the message of health_ok).
health_answers() {
  # nginx balancing over other app hosts too would let one of them answer for a broken app
  # here: this host's own gateway is asked first ($HEALTH_SOCKET, on web+app hosts of several).
  if [ -n "${HEALTH_SOCKET:-}" ]; then
    check_health "$HEALTH_SOCKET_URL" - "$HEALTH_STATUS" "$HEALTH_TIMEOUT" "$HEALTH_RETRIES" "$HEALTH_UNIT" "$HEALTH_SOCKET" || {
      code="$code (from this host's own gateway)"
      return 1
    }
  fi
  check_health "$HEALTH_URL" "$HEALTH_RESOLVE" "$HEALTH_STATUS" "$HEALTH_TIMEOUT" "$HEALTH_RETRIES" "$HEALTH_UNIT"
}

# health_ok: the health step. Reports the answer (@@health CODE); when it is not the one
# wanted, the last lines of the app's journal say why, and it fails.
health_ok() {
  if health_answers; then
    printf '@@health %s\n' "$code"
    return 0
  fi
  printf '@@health %s\n' "$code"
  echo "GET $HEALTH_PATH through nginx answered $code, not $HEALTH_STATUS; last lines of the app's journal:" >&2
  journalctl -u "$HEALTH_UNIT" -n "$JOURNAL_LINES" --no-pager -o cat >&2
  return 1
}

# static_ok: one file of the static folder ($STATIC_DIR, in the live release) asked for through
# nginx under $STATIC_URL (with $HEALTH_RESOLVE, $HEALTH_TIMEOUT). The health check goes
# through the app; nginx serves static files itself, and a folder it cannot read answers 403
# to every visitor while the app is healthy. Nothing set, nothing to check.
static_ok() {
  [ -n "${STATIC_DIR:-}" ] || return 0
  so_file=$(cd "$STATIC_DIR" 2>/dev/null && find . -type f ! -path '*/.*' 2>/dev/null | grep -m 1 -E '^\./[A-Za-z0-9_./-]+$')
  if [ -z "$so_file" ]; then
    echo "@@note the static folder $STATIC_DIR is empty, so no static file could be checked (does the build write there, e.g. collectstatic with STATIC_ROOT set to it?)"
    return 0
  fi
  so_path=${STATIC_URL#*://*/}
  so_path=/${so_path}${so_file#./}
  step "static file GET $so_path"
  so_code=$(curl -s -k -o /dev/null -w '%{http_code}' --max-time "$HEALTH_TIMEOUT" --resolve "$HEALTH_RESOLVE" "$STATIC_URL${so_file#./}")
  [ "$so_code" = 200 ] && return 0
  case $so_code in
    403) so_why="nginx may not read it: the folders and files under $STATIC_DIR must be readable by others (a build hook wrote them with a strict umask or chmod?)" ;;
    404) so_why="nginx does not find it where the site maps $so_path: check app.static.path against where the files are written (STATIC_ROOT)" ;;
    *) so_why='see the nginx error log' ;;
  esac
  echo "GET $so_path through nginx answered $so_code, not 200: $so_why" >&2
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
  release_timers
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

# rollback_live STEP: a deploy failed after services were touched: the previous release and
# its configuration go back and are reloaded (put_back_live $LIVE_UNIT $LIVE_RESTART); with a
# health check, how the site answers after that is reported (@@rolledback CODE).
# When there was no previous release ($LIVE_CURRENT is gone again), the app's units
# ($LIVE_UNITS) are stopped and disabled, so the app is not restarted every few seconds (nor
# by a request through its socket) until a deploy succeeds: @@rolledback none CODE.
rollback_live() {
  echo 'rolling back to the previous release and its configuration' >&2
  # Instances new in this deploy stop while their unit files are still there to stop them by.
  parts_stop_new
  put_back_live "$LIVE_UNIT" "$LIVE_RESTART"
  parts_put_back
  rl_none=
  if [ -n "${LIVE_CURRENT:-}" ] && [ ! -L "$LIVE_CURRENT" ]; then
    rl_none='none '
    # shellcheck disable=SC2086 # a list of unit names, split on purpose
    systemctl disable --now --quiet $LIVE_UNITS >/dev/null 2>&1
    # shellcheck disable=SC2086
    systemctl reset-failed $LIVE_UNITS >/dev/null 2>&1
  fi
  if [ -n "$rl_none" ] && [ -n "${HEALTH_URL:-}" ]; then
    # Nothing of the app answers any more: one request says what does instead.
    check_health "$HEALTH_URL" "$HEALTH_RESOLVE" "$HEALTH_STATUS" "$HEALTH_TIMEOUT" 1 "$HEALTH_UNIT"
    printf '@@rolledback none %s\n' "$code"
  elif [ -n "${HEALTH_URL:-}" ]; then
    health_answers
    printf '@@rolledback %s\n' "$code"
  elif [ -n "$rl_none" ]; then
    printf '@@rolledback none\n'
  fi
  audit failed "$1"
  fail "$1"
}

# undo_rollback STEP: a rollback failed after services were touched: what was live before it
# goes back, the app restarted.
undo_rollback() {
  echo 'putting back what was live before the rollback' >&2
  # A rollback that restored the database (--restore-db) puts the database back first.
  if [ -n "${DB_SWAPPED:-}" ]; then
    db_swap_back "$DB_NAME" || echo "could not swap the databases back: $DB_NAME is the restored one, ${DB_NAME}__previous the one before" >&2
  fi
  put_back_live "$LIVE_UNIT" 1
  release_timers
  audit failed "$1"
  fail "$1"
}

# run_handler COMMAND [UNIT]: a role's handler, COMMAND being shell text as the role wrote it
# (a library function such as reload_nginx, or a command line). When it fails it shows what it
# said and, with UNIT, the last lines of UNIT's journal (why the app did not start).
run_handler() {
  eval "$1" 2>"$TMPD/handler" || {
    cat "$TMPD/handler" >&2
    if [ -n "${2:-}" ]; then journalctl -u "$2" -n "$JOURNAL_LINES" --no-pager -o cat >&2; fi
    return 1
  }
}

# enable_service SERVICE: started at boot from now on.
enable_service() {
  systemctl enable --quiet "$1"
}

# start_service SERVICE: when it does not start, the last lines of its journal say why.
start_service() {
  systemctl start "$1" || {
    journalctl -u "$1" -n "$JOURNAL_LINES" --no-pager -o cat >&2
    return 1
  }
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

# stop_units UNITS: the app's processes stop (its socket first, so nothing starts them again);
# DB_UNITS, for start_units and the undo of a restore.
stop_units() {
  # A db host of its own runs none of the app's units: nothing to stop.
  [ -n "$DB_UNITS" ] || return 0
  # shellcheck disable=SC2086 # a list of unit names, split on purpose
  systemctl stop $DB_UNITS
}

# start_units: the app's processes again after a database restore; the journal says why not.
start_units() {
  for su_unit in $DB_UNITS; do
    systemctl reset-failed "$su_unit" 2>/dev/null
    start_service "$su_unit" || return 1
  done
}

# restore_failed STEP: a database restore failed before its swap: the database is untouched and
# the app starts again on it.
restore_failed() {
  start_units || true
  audit failed "$1"
  fail "$1 (the database is unchanged)"
}

# undo_db_restore STEP: the app is not healthy on the restored database ($DB_NAME): the one it
# replaced goes back, and the app restarts on it.
undo_db_restore() {
  echo 'putting the previous database back' >&2
  db_swap_back "$DB_NAME" || echo "could not swap the databases back: $DB_NAME is the restored one, ${DB_NAME}__previous the one before" >&2
  start_units || true
  audit failed "$1"
  fail "$1 (the previous database is back)"
}

# The app's processes and scheduled jobs (src/plan/parts.ts). Unit lists are split on purpose.

# hold_timers: the timers of $HELD_TIMERS stop while a release switches, so that no job starts
# on half of it; a job already running finishes on the release it started with.
hold_timers() {
  [ -n "${HELD_TIMERS:-}" ] || return 0
  # shellcheck disable=SC2086
  systemctl stop $HELD_TIMERS
}

# release_timers: the held timers run again (the deploy was committed, or undone).
release_timers() {
  [ -n "${HELD_TIMERS:-}" ] || return 0
  # shellcheck disable=SC2086
  systemctl start $HELD_TIMERS >/dev/null 2>&1 || true
}

# parts_stop UNIT...: instances and timers the inventory no longer has stop and stay stopped.
parts_stop() {
  systemctl disable --now --quiet "$@" 2>"$TMPD/parts" || {
    cat "$TMPD/parts" >&2
    return 1
  }
  systemctl reset-failed "$@" 2>/dev/null
  return 0
}

# parts_run ACTION UNIT...: systemctl ACTION (restart, start, enable) of the app's instances or
# timers; a restart waits for each to stop as its unit says (a warm shutdown), then starts it.
parts_run() {
  pr_action=$1
  shift
  systemctl "$pr_action" --quiet "$@" 2>"$TMPD/parts" || {
    cat "$TMPD/parts" >&2
    return 1
  }
}

# parts_settle SECONDS UNIT...: each instance still runs SECONDS after its start, and systemd had
# not to restart it; otherwise its journal says why.
parts_settle() {
  sleep "$1"
  shift
  for ps_unit in "$@"; do
    if ! systemctl is-active --quiet "$ps_unit" || [ "$(systemctl show -p NRestarts --value "$ps_unit")" != 0 ]; then
      echo "$ps_unit did not stay up; last lines of its journal:" >&2
      journalctl -u "$ps_unit" -n "$JOURNAL_LINES" --no-pager -o cat >&2
      return 1
    fi
  done
}

# parts_stop_new: a deploy failed after the processes were touched: the instances new in it
# ($PARTS_NEW) stop and are disabled, before the previous configuration comes back.
parts_stop_new() {
  if [ -n "${PARTS_NEW:-}" ]; then
    # shellcheck disable=SC2086
    systemctl disable --now --quiet $PARTS_NEW >/dev/null 2>&1
  fi
  return 0
}

# parts_put_back: then (the previous configuration back) those that ran before ($PARTS_BEFORE)
# run again on the previous release, and the held timers run again, enabled (a deploy that
# dropped a job had disabled its timer).
parts_put_back() {
  if [ -n "${PARTS_BEFORE:-}" ]; then
    # shellcheck disable=SC2086
    systemctl reset-failed $PARTS_BEFORE >/dev/null 2>&1
    # shellcheck disable=SC2086
    systemctl enable --quiet $PARTS_BEFORE >/dev/null 2>&1
    # shellcheck disable=SC2086
    systemctl restart $PARTS_BEFORE >/dev/null 2>&1 || echo "could not restart $PARTS_BEFORE" >&2
  fi
  if [ -n "${HELD_TIMERS:-}" ]; then
    # shellcheck disable=SC2086
    systemctl enable --quiet $HELD_TIMERS >/dev/null 2>&1
  fi
  release_timers
}

# parts_remove PATH...: unit files of processes and jobs the inventory no longer has (their
# instances were stopped first).
parts_remove() {
  rm -f "$@" && systemctl daemon-reload
}
