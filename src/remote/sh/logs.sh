# Shell functions of `stack logs`: the journal of the app's units and nginx's log files of its
# site, each line as a record "log<TAB>SOURCE<TAB>TEXT" that the client merges by time. Values
# come in as arguments (src/commands/logs.ts). POSIX sh (Debian's dash); shellcheck -s sh clean.

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

# logs_journal UNIT N SINCE PATTERN [-f]: the last N lines of UNIT's journal (since SINCE, a
# journalctl time, when not empty) that match PATTERN, with ISO times; -f follows it.
logs_journal() {
  lj_unit=$1 lj_n=$2 lj_since=$3 lj_pattern=$4
  set -- journalctl --quiet --no-pager -o short-iso-precise -u "$lj_unit"
  if [ -n "$lj_since" ]; then set -- "$@" --since "$lj_since"; fi
  if [ "${5:-}" = -f ]; then
    # With a pattern, the first lines shown are the matches among the last N.
    "$@" -f -n "$lj_n" | logs_grep "$lj_pattern" | logs_label "$lj_unit"
  else
    "$@" | logs_grep "$lj_pattern" | tail -n "$lj_n" | logs_label "$lj_unit"
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
