# The server side of `stack run`: sent on the command line (`sh -c`), since stdin and the
# terminal belong to the command. POSIX sh (Debian's dash); shellcheck -s sh clean.

# run_in_release UNIT MODE CURRENT APP ENV_FILE SHARED MEDIA COMMAND...: COMMAND in the live
# release as the app's user, in a transient service UNIT with the app's environment (systemd
# reads ENV_FILE itself: no value is ever on a command line) and the limits of the app's own
# unit. MODE is --pty or --pipe. COMMAND runs under a shell that outlives an interrupt and
# exits with COMMAND's status: systemd counts a service killed by SIGINT or SIGTERM as a
# success, so `stack run` would report 0 for a command stopped with Ctrl-C. `current` is resolved once, so the folder, the virtualenv and
# STACK_RELEASE all name one release even if a deploy switches meanwhile. MEDIA may be empty.
run_in_release() {
  rr_unit=$1 rr_mode=$2 rr_current=$3 rr_app=$4 rr_env=$5 rr_shared=$6 rr_media=${7:-$6}
  shift 7
  # systemd expands $NAME in a service's command line: each $ is doubled so that the command
  # gets its arguments exactly as typed.
  rr_n=$#
  while [ "$rr_n" -gt 0 ]; do
    rr_arg=$(printf '%s' "$1" | sed 's/\$/$$/g'; printf x)
    shift
    set -- "$@" "${rr_arg%x}"
    rr_n=$((rr_n - 1))
  done
  rr_release=$(readlink -e "$rr_current") || {
    echo 'no release is live yet: run stack deploy first' >&2
    exit 127
  }
  exec systemd-run --quiet --wait --collect --service-type=exec "$rr_mode" --unit="$rr_unit" \
    -p "User=$rr_app" -p "Group=$rr_app" -p "EnvironmentFile=$rr_env" -p "WorkingDirectory=$rr_release" \
    -p UMask=0027 -p NoNewPrivileges=yes -p ProtectSystem=strict -p ProtectHome=yes -p PrivateTmp=yes -p RestrictSUIDSGID=yes \
    -p "ReadWritePaths=-$rr_shared" -p "ReadWritePaths=-$rr_media" \
    -E "PATH=$rr_release/.venv/bin:/usr/local/bin:/usr/bin:/bin" -E "VIRTUAL_ENV=$rr_release/.venv" -E "STACK_RELEASE=${rr_release##*/}" \
    -- sh -c 'trap : INT TERM HUP; "$$@"' stack-run "$@"
}
