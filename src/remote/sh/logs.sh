# Shell functions of `stack logs`: the journal of the app's units (the web, its processes, its
# scheduled jobs) and nginx's log files of its site, each line as a record
# "log<TAB>SOURCE<TAB>TEXT" that the client merges by time. Values come in as arguments
# (src/commands/logs.ts). POSIX sh (Debian's dash); shellcheck -s sh clean.

# logs_tz: the server's UTC offset (+0000), for nginx's error log, whose times have no zone.
logs_tz() {
  printf 'tz\t%s\n' "$(date +%z)"
}

# logs_grep PATTERN: the lines matching the extended regular expression PATTERN, all lines when
# it is empty; line by line, so a followed log shows each line as it comes.
logs_grep() {
  if [ -n "$1" ]; then grep --line-buffered -E -e "$1"; else cat; fi
}

# logs_label SOURCE: each line as a record of SOURCE, passed on at once.
logs_label() {
  sed -u "s/^/log\t$1\t/"
}

# logs_journal UNIT N SINCE PATTERN [-f] [ALSO...]: the last N lines of UNIT's journal (since
# SINCE, a journalctl time, when not empty) that match PATTERN, with ISO times; -f follows it.
# UNIT may be a pattern (blog.worker@*.service: a process's instances, past ones included);
# ALSO are more units whose lines come under UNIT's name (the instances there are now).
logs_journal() {
  lj_unit=$1 lj_n=$2 lj_since=$3 lj_pattern=$4 lj_follow=''
  shift 4
  if [ "${1:-}" = -f ]; then
    lj_follow=1
    shift
  fi
  # A pattern no unit in the journal matches (a process never run) is an error to journalctl
  # ("Failed to add filter for units"), unless an ALSO names one: for us, no lines.
  # journalctl's errors go to fd 3: stderr, or nowhere for such a pattern alone.
  exec 3>&2
  case $lj_unit in *'*'*) if [ $# -eq 0 ]; then exec 3>/dev/null; fi ;; esac
  # Each ALSO becomes "-u ALSO" at the end; the loop's list is the ALSO given, read once.
  for lj_also in "$@"; do
    set -- "$@" -u "$lj_also"
    shift
  done
  set -- journalctl --quiet --no-pager -o short-iso-precise -u "$lj_unit" "$@"
  if [ -n "$lj_since" ]; then set -- "$@" --since "$lj_since"; fi
  if [ -n "$lj_follow" ]; then
    # With a pattern, the first lines shown are the matches among the last N.
    "$@" -f -n "$lj_n" 2>&3 | logs_grep "$lj_pattern" | logs_label "$lj_unit"
  else
    "$@" 2>&3 | logs_grep "$lj_pattern" | tail -n "$lj_n" | logs_label "$lj_unit"
  fi
}

# logs_file SOURCE FILE N PATTERN [-f]: the same for a log file (nginx's); a missing file has
# no lines. -f follows it by name, across logrotate's renames.
logs_file() {
  [ -f "$2" ] || [ "${5:-}" = -f ] || return 0
  if [ "${5:-}" = -f ]; then
    tail -n "$3" -F "$2" 2>/dev/null | logs_grep "$4" | logs_label "$1"
  else
    logs_grep "$4" <"$2" | tail -n "$3" | logs_label "$1"
  fi
}

# logs_follow_until_eof: the followers (started in the background before) run until the client
# goes: stdin ends on Ctrl-C or when the connection drops. Then the whole process group stops:
# the script runs under `setsid`, so that group is the followers' pipelines and itself.
logs_follow_until_eof() {
  cat >/dev/null
  trap '' TERM
  kill -TERM 0 2>/dev/null
  wait
}

# job_run UNIT CURRENT N: `stack schedule run`: the scheduled job UNIT (APP.job.NAME, without
# its suffix) runs now through its service, as its timer runs it, and this waits for the run to
# end: `systemctl start` of a oneshot service returns when it has finished (a run going on, the
# timer's, is joined: a job never runs twice at once). Then "jobrun RESULT STATUS SECONDS
# START_CODE" (systemd's result and exit status of the run, how long it took, systemctl's exit
# code) and the last N lines of that run's journal, its own and systemd's about it, as "log"
# records. Returns 0 when the run succeeded and 1 when not; 2 ("jobmissing WHAT") when no
# release is live at CURRENT or the live one has no such job (a deploy makes its units).
job_run() {
  if [ ! -L "$2" ]; then
    printf 'jobmissing\trelease\n'
    return 2
  fi
  # The release's list of its processes and timers (record_parts); one recorded before stack ran
  # jobs has none, and then the unit file says.
  if [ -f "$2/.stack/parts" ]; then
    case " $(sed -n 2p "$2/.stack/parts") " in
      *" $1.timer "*) ;;
      *)
        printf 'jobmissing\tjob\n'
        return 2
        ;;
    esac
  elif [ ! -f "/etc/systemd/system/$1.service" ]; then
    printf 'jobmissing\tjob\n'
    return 2
  fi
  jr_before=$(systemctl show -p InvocationID --value "$1.service")
  jr_t0=$(date +%s)
  systemctl start "$1.service" 2>"$TMPD/job"
  jr_code=$?
  jr_t1=$(date +%s)
  jr_id=$(systemctl show -p InvocationID --value "$1.service")
  jr_result=$(systemctl show -p Result --value "$1.service")
  printf 'jobrun\t%s\t%s\t%s\t%s\n' "${jr_result:--}" "$(systemctl show -p ExecMainStatus --value "$1.service")" "$((jr_t1 - jr_t0))" "$jr_code"
  # systemctl's own complaint (a unit it cannot start at all) goes to the client's error.
  cat "$TMPD/job" >&2
  # Nothing ran when the start failed and the invocation is the one before: no journal to show.
  if [ -n "$jr_id" ] && { [ "$jr_code" = 0 ] || [ "$jr_id" != "$jr_before" ]; }; then
    # What the run wrote may still be on its way to journald.
    journalctl --sync 2>/dev/null
    journalctl --quiet --no-pager -o short-iso-precise "_SYSTEMD_INVOCATION_ID=$jr_id" + "INVOCATION_ID=$jr_id" | tail -n "$3" | logs_label "$1.service"
  fi
  [ "$jr_code" = 0 ] && [ "$jr_result" = success ]
}

# schedule_run UNIT CURRENT N JOB: job_run, and how the run ended in the audit log (lib.sh's
# audit, in the root script this runs in); nothing is recorded when it refused, as nothing ran.
schedule_run() {
  job_run "$1" "$2" "$3"
  case $? in
    0) audit ok '' ;;
    1) audit failed "job $4" ;;
  esac
  return 0
}
