# The deploy lock, seen from the scripts that run under it (the facts script takes it). It is a
# folder, which mkdir makes atomically, and its token file says which deploy holds it: every
# function here names the lock by that file, TOKENFILE; the folder holding it is the lock.
# POSIX sh (Debian's dash); checked with `shellcheck -s sh`, run under dash by the unit tests.

# lock_ours TOKENFILE TOKEN: whether the lock is still the one TOKEN took.
lock_ours() {
  [ "$(cat "$1" 2>/dev/null)" = "$2" ]
}

# release_lock TOKENFILE TOKEN: gives the lock back, unless another deploy holds it by now.
release_lock() {
  if lock_ours "$1" "$2"; then rm -rf "${1%/*}"; fi
}

# clear_lock TOKENFILE [TOKEN]: removes a stale lock only while it is still the one judged
# stale: the same TOKEN, or, for one left without a holder (no TOKEN), still none.
clear_lock() {
  if [ -n "${2:-}" ]; then
    release_lock "$1" "$2"
  elif [ ! -e "$1" ]; then
    rm -rf "${1%/*}"
  fi
}

# hold_lock: a script under our lock ($LOCK_TOKEN_FILE, $LOCK_TOKEN) goes on only while it is
# ours. While it runs the lock is not stale, whatever happened to the client: its pid says so,
# and `active` dates the last sign of life, for a client that vanishes between two scripts.
hold_lock() {
  lock_ours "$LOCK_TOKEN_FILE" "$LOCK_TOKEN" || {
    echo 'the deploy lock is no longer ours: another deploy took it over' >&2
    fail 'deploy lock'
  }
  echo $$ >"${LOCK_TOKEN_FILE%/*}/script.pid"
  touch "${LOCK_TOKEN_FILE%/*}/active"
}

# on_exit: the EXIT trap of every root script. The temporary folder goes. Under a lock,
# LOCK_RELEASE says what becomes of it: "yes" gives it back (the command's last script),
# "on-failure" only when the script failed (a step whose client may be gone, like an upload cut
# off: nobody else would give it back); otherwise it stays, marked active, for the next script.
on_exit() {
  status=$?
  rm -rf "$TMPD"
  [ -n "${LOCK_TOKEN_FILE:-}" ] || return 0
  if [ "$LOCK_RELEASE" = yes ] || { [ "$LOCK_RELEASE" = on-failure ] && [ "$status" -ne 0 ]; }; then
    release_lock "$LOCK_TOKEN_FILE" "$LOCK_TOKEN"
  else
    rm -f "${LOCK_TOKEN_FILE%/*}/script.pid"
    if lock_ours "$LOCK_TOKEN_FILE" "$LOCK_TOKEN"; then touch "${LOCK_TOKEN_FILE%/*}/active"; fi
  fi
}
