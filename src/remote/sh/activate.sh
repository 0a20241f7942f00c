# Putting a release live: files, links and removals staged and renamed into place, each
# remembered in the undo log first (lib.sh); the units checked; the configuration recorded with
# the release; hooks; old releases pruned. A function that can fail at more than one point
# aborts itself, naming the point; the others return non-zero and the script names the step.
# POSIX sh (Debian's dash); checked with `shellcheck -s sh`, run under dash by the unit tests.

# install_file PATH MODE OWNER:GROUP: PATH from base64 on stdin, written next to it with its
# mode and owner, then renamed over it: a reader never sees half a file, nor a secret with the
# wrong owner. mkdir -p leaves an existing parent's mode alone (install -d would reset it).
install_file() {
  if_new=$1.stack-new.$$
  mkdir -p "$(dirname "$1")"
  base64 -d >"$if_new" || abort "write $1"
  if ! { chmod "$2" "$if_new" && chown "$3" "$if_new"; }; then
    rm -f "$if_new"
    abort "set attributes of $1"
  fi
  remember "$1"
  mv -f "$if_new" "$1" || abort "install $1"
}

# set_attributes PATH MODE OWNER:GROUP: the content is right, its mode or owner is not.
set_attributes() {
  mkdir -p "$(dirname "$1")"
  remember "$1"
  chmod "$2" "$1" && chown "$3" "$1"
}

# install_link PATH TARGET: made next to PATH and renamed over it (mv -T replaces a link in one
# rename).
install_link() {
  remember "$1"
  ln -sfn "$2" "$1.stack-new.$$" && mv -fT "$1.stack-new.$$" "$1"
}

# remove_file PATH
remove_file() {
  remember "$1"
  rm -f "$1"
}

# verify_unit UNIT [CURRENT]: systemd-analyze exits 0 on unknown keys and bad values, so
# anything it prints fails the check; what it printed is shown. With CURRENT (before the first
# release) the unit's interpreter under CURRENT does not exist yet: that one complaint is
# expected, and any other still fails.
verify_unit() {
  systemd-analyze verify "$1" >"$UNDO.unit" 2>&1
  vu_status=0
  if [ -n "${2:-}" ]; then
    grep -v "Command $2/.* is not executable" "$UNDO.unit" | grep -q . && vu_status=1
  else
    grep -q . "$UNDO.unit" && vu_status=1
  fi
  if [ "$vu_status" -ne 0 ]; then cat "$UNDO.unit" >&2; fi
  rm -f "$UNDO.unit"
  return "$vu_status"
}

# record_config DIR PATH...: the configuration a release goes live with, kept with it in
# DIR/.stack (root's alone: it holds secrets): a copy of each managed file PATH there is. The
# links follow, one record_link each.
record_config() {
  rcd_rel=$1
  shift
  install -d -m 0700 -o root -g root "$rcd_rel/.stack" && rm -rf "$rcd_rel/.stack/config" && : >"$rcd_rel/.stack/links"
  for rcd_path in "$@"; do
    if [ -e "$rcd_path" ]; then
      mkdir -p "$rcd_rel/.stack/config${rcd_path%/*}" && cp -a "$rcd_path" "$rcd_rel/.stack/config$rcd_path"
    fi
  done
}

# record_link DIR PATH TARGET
record_link() {
  printf '%s %s\n' "$2" "$3" >>"$1/.stack/links"
}

# run_hook COMMAND...: a server hook (COMMAND is its sandbox); its output is shown only if it
# fails.
run_hook() {
  "$@" >"$TMPD/hook" 2>&1 </dev/null || {
    tail -n 40 "$TMPD/hook" >&2
    return 1
  }
}

# prune_releases RELEASES KEEP NEW CURRENT USER: keeps the newest KEEP releases. Releases that
# never went live go first: no manifest (an upload cut off) or no recorded configuration (its
# deploy died before activation). Never NEW, nor the one CURRENT points at, nor one a process of
# USER still works in (one that was not restarted).
prune_releases() {
  cd "$1" || return 0
  for pr_release in *; do
    has_record "$pr_release" || [ "$pr_release" = "$3" ] || [ "releases/$pr_release" = "$(readlink "$4")" ] ||
      rm -rf "$pr_release"
  done
  pr_inuse=" $(for pr_pid in $(pgrep -u "$5"); do readlink "/proc/$pr_pid/cwd"; done 2>/dev/null |
    sed -n "s|^$1/\([^/]*\).*|\1|p" | sort -u | tr '\n' ' ')"
  # shellcheck disable=SC2012 # release ids are plain names: no blanks, no newlines
  ls -1 | sort -r | tail -n +"$(($2 + 1))" | while read -r pr_release; do
    case $pr_inuse in *" $pr_release "*) continue ;; esac
    [ "$pr_release" = "$3" ] || rm -rf "$pr_release"
  done
  cd /
}

# record_parts DIR INSTANCES TIMERS: the process instances and job timers a release runs with
# (space-separated lists), kept with its configuration for `stack rollback` (sync_parts).
record_parts() {
  printf '%s\n%s\n' "$2" "$3" >"$1/.stack/parts"
}

# hold_app_timers APP: every timer of the app's jobs stops while a rollback switches releases
# (HELD_TIMERS, which a failure starts again).
hold_app_timers() {
  HELD_TIMERS=$(systemctl list-units --plain --no-legend --state=active "$1.job.*.timer" 2>/dev/null | awk '{ printf "%s ", $1 }')
  hold_timers
}

# sync_parts DIR APP SECONDS: after a rollback, the processes and timers are those the release DIR ran
# with (its .stack/parts): others stop, its instances restart on it and must stay up, its timers
# run. A release recorded before stack ran processes has no list: nothing is touched.
sync_parts() {
  [ -f "$1/.stack/parts" ] || return 0
  sp_instances=$(sed -n 1p "$1/.stack/parts") sp_timers=$(sed -n 2p "$1/.stack/parts")
  sp_now=$(systemctl list-units --all --plain --no-legend "$2.*@*.service" "$2.job.*.timer" 2>/dev/null | awk '{ print $1 }')
  for sp_unit in $sp_now; do
    case " $sp_instances $sp_timers " in *" $sp_unit "*) ;; *) parts_stop "$sp_unit" || return 1 ;; esac
  done
  # The timers first: processes that do not stay up must not leave them stopped.
  if [ -n "$sp_timers" ]; then
    # shellcheck disable=SC2086 # lists of unit names
    parts_run enable $sp_timers && parts_run start $sp_timers || return 1
  fi
  # The timers it held are running again or gone: nothing for a failure to start.
  # shellcheck disable=SC2034 # read by release_timers in lib.sh
  HELD_TIMERS=
  if [ -n "$sp_instances" ]; then
    # shellcheck disable=SC2086
    parts_run enable $sp_instances && parts_run restart $sp_instances && parts_settle "$3" $sp_instances || return 1
  fi
  return 0
}
