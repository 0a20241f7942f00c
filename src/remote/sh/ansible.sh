# The shell of the Ansible role `stack export ansible` writes (src/export/ansible.ts). The role
# ships this file, after venv.sh, as roles/stack/files/stack.sh; each of its shell tasks is that
# file (read on the controller with lookup('file', ...)) and one call of a function below, with
# the values quoted by the export or read from variables the task's environment sets.
# Each function does what a step of stack setup / stack deploy does, the Ansible way: no lock, no
# undo log, no step lines; the task's exit status and output are what the role looks at.
# POSIX sh (Debian's dash); checked with `shellcheck -s sh` in the unit tests.
# No Jinja markers here (a brace followed by a brace, percent or hash): the text reaches the server
# through a template, and although Ansible does not template what a lookup returns, nothing here
# should depend on that.

# task_packages PACKAGE...: apt-get rather than the apt module, which needs python3-apt on the
# server (a minimal Debian lacks it). Without recommends, like stack; the lists are updated only
# when an install fails, so that a server without network installs from its cache. apt-get's
# output is the task's ("0 newly installed" when nothing was).
task_packages() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "$@" ||
    { apt-get update -q && apt-get install -y -q --no-install-recommends "$@"; }
}

# task_leave_group USER GROUP: USER is not in GROUP; prints "removed" when it was.
task_leave_group() {
  if id -nG "$1" 2>/dev/null | tr ' ' '\n' | grep -qx "$2"; then
    gpasswd -d "$1" "$2" >/dev/null && echo removed
  fi
}

# task_self_signed DIR CN SAN KEY CERT: a self-signed certificate for CN and the subjectAltName
# SAN ("DNS:a,IP:b"), its key and certificate in DIR. The task runs it only while KEY is missing.
task_self_signed() {
  install -d -m 0755 -o root -g root "$1" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
      -subj "/CN=$2" -addext "subjectAltName=$3" -keyout "$4" -out "$5" &&
    chmod 600 "$4" && chmod 644 "$5"
}

# task_firewall SSH_PORT: SSH, HTTP and HTTPS stay open when ufw is installed.
task_firewall() {
  command -v ufw >/dev/null || return 0
  for tf_port in "$1" 80 443; do
    ufw allow "$tf_port/tcp" >/dev/null || return 1
  done
}

# task_venv_key DIGEST LINK: two lines, the name of the virtualenv the requirements' DIGEST
# needs on this server's Python (venv_key of venv.sh, the name stack gives it, so that either
# reuses what the other built) and the name of the one LINK (the live release's .venv) points
# at, empty when there is none.
task_venv_key() {
  venv_key "$1" || {
    echo 'python3 does not run on the server' >&2
    return 1
  }
  tvk_live=$(readlink "$2" 2>/dev/null || true)
  echo "${tvk_live##*/}"
}

# task_sandboxed USER DIR SECONDS ENV_FILE COMMAND [WRITABLE...]: COMMAND (sh -c) in a transient
# systemd service, as stack's build steps and hooks run: as USER in DIR, with DIR/.venv/bin first
# on PATH, the system read-only but the WRITABLE paths, private /tmp, no new privileges, at most
# SECONDS, every process it started ended with it; with ENV_FILE's variables unless it is empty.
task_sandboxed() {
  ts_user=$1 ts_dir=$2 ts_seconds=$3 ts_env_file=$4 ts_command=$5
  shift 5
  # The WRITABLE paths become their properties in place (one shift per path read).
  for ts_path; do
    set -- "$@" -p "ReadWritePaths=-$ts_path"
    shift
  done
  set -- "$@" -p PrivateTmp=yes -p ProtectHome=yes -p NoNewPrivileges=yes -p RestrictSUIDSGID=yes \
    -p UMask=0022 -p "RuntimeMaxSec=$ts_seconds"
  if [ -n "$ts_env_file" ]; then set -- "$@" -p "EnvironmentFile=$ts_env_file"; fi
  systemd-run --quiet --wait --pipe --collect --service-type=exec -p "User=$ts_user" -p "Group=$ts_user" \
    -p "WorkingDirectory=$ts_dir" -p ProtectSystem=strict "$@" \
    -E "PATH=$ts_dir/.venv/bin:/usr/local/bin:/usr/bin:/bin" -- sh -c "$ts_command"
}

# task_unpack REL ID RELEASES BUILD_USER: the uploaded code (RELEASES/.ID.upload) unpacked into
# REL for the build user: modes as they were locally, owners not; the upload goes.
task_unpack() {
  tu_upload=$3/.$2.upload
  rm -rf "$1" && install -d -m 0750 -o "$4" -g "$4" "$1" &&
    tar -xzpf "$tu_upload" -C "$1" --no-same-owner &&
    rm -f "$tu_upload" &&
    chown -R -h -P "$4:$4" "$1"
}

# task_venv REL KEY VENVS BUILD_USER [PIP_ARGUMENTS INDEX_FILE]: REL/.venv links to the shared
# virtualenv VENVS/KEY, which is reused when it is sealed (prints "reused"), and otherwise built
# as the build user (pip install with PIP_ARGUMENTS, a command line's words already quoted, when
# there are requirements) and sealed: root's, read-only to everyone else, then marked ready. Last,
# the release's Python files are compiled, which only saves time: its failure fails nothing.
# INDEX_FILE (root's alone) holds the package index's URL on its first line, or nothing: pip's
# sandbox reads it on stdin into PIP_INDEX_URL, as stack's build does, because the URL may hold a
# token and no command line may show it (ps, systemctl show, Ansible's cmd). The file goes
# whatever happens.
task_venv() {
  tv_status=0
  task_venv_build "$@" || tv_status=1
  if [ -n "${6:-}" ]; then rm -f "$6" || tv_status=1; fi
  return "$tv_status"
}

task_venv_build() {
  tv_rel=$1 tv_key=$2 tv_venvs=$3 tv_build=$4 tv_pip=${5:-} tv_index=${6:-/dev/null}
  tv_venv=$tv_venvs/$tv_key
  rm -rf "$tv_rel/.venv" && ln -s "../../${tv_venvs##*/}/$tv_key" "$tv_rel/.venv" || return 1
  tv_built=1
  if [ -d "$tv_venv" ] && [ ! -L "$tv_venv" ] && [ "$(stat -c %U "$tv_venv")" = root ] &&
    [ "$(stat -c %U "$tv_venv/.stack-venv" 2>/dev/null)" = root ]; then
    tv_built=0
    echo reused
  fi
  if [ "$tv_built" = 1 ]; then
    rm -rf "$tv_venv" && install -d -m 0755 -o "$tv_build" -g "$tv_build" "$tv_venv" || return 1
    # shellcheck disable=SC2016 # expanded by the sandbox's shell, in the release
    task_sandboxed "$tv_build" "$tv_rel" 600 '' 'exec python3 -m venv --system-site-packages "$(realpath -e .venv)"' \
      "$tv_venvs" || return 1
    if [ -n "$tv_pip" ]; then
      # Exported only when there is one: an empty PIP_INDEX_URL would not mean pip's default.
      # shellcheck disable=SC2016 # expanded by the sandbox's shell, in the release
      task_sandboxed "$tv_build" "$tv_rel" 1800 '' \
        'IFS= read -r PIP_INDEX_URL || :; if [ -n "$PIP_INDEX_URL" ]; then export PIP_INDEX_URL; fi; exec "$(realpath -e .venv)/bin/python" -m pip install --no-input --no-cache-dir --disable-pip-version-check '"$tv_pip" \
        "$tv_venvs" <"$tv_index" || return 1
    fi
    pkill -KILL -u "$tv_build" 2>/dev/null || true
    chown -R -h -P root:root "$tv_venv" || return 1
    rm -f "$tv_venv/.stack-venv" && find "$tv_venv" ! -type l -exec chmod ug-s,go=u,go-w {} + || return 1
    printf '%s\n' "$tv_key" >"$tv_venv/.stack-venv" && chmod 0644 "$tv_venv/.stack-venv" || return 1
  fi
  task_sandboxed "$tv_build" "$tv_rel" 600 '' "exec .venv/bin/python -m compileall -q -x '/\\.venv/' ." "$tv_rel" \
    >/dev/null 2>&1 || true
}

# task_seal REL BUILD_USER APP [STATIC]: nothing of the build runs any more, no record of
# stack's stays, and the release is root's (owner first, never following a link: from then on
# only root can change the tree), readable by the app's group, with nothing for others but the
# STATIC folder (relative to REL) and a way through the folders above it, for nginx.
# The first step that fails fails the task: a release half sealed must not go live.
# As stack's seal (release.sh), STATIC counts only where it really is REL/STATIC: a build (or a
# hook) that made it, or a folder above it, a link to somewhere else would have root open that
# place to everyone. Checked after the chown, when the build user can no longer change the tree;
# the task fails rather than sealing without the static files nginx is to serve.
task_seal() {
  tsl_rel=$1 tsl_static=${4:-}
  pkill -KILL -u "$2" 2>/dev/null || true
  rm -rf "$tsl_rel/.stack" "$tsl_rel/.stack-release.json" || return 1
  chown -R -h -P root:root "$tsl_rel" || return 1
  if [ -n "$tsl_static" ] && [ -d "$tsl_rel/$tsl_static" ] &&
    [ "$(realpath -e "$tsl_rel/$tsl_static")" != "$(realpath -e "$tsl_rel")/$tsl_static" ]; then
    echo "the static folder $tsl_static is a link (or under one) to $(realpath -e "$tsl_rel/$tsl_static"), outside the release: refused" >&2
    return 1
  fi
  find "$tsl_rel" ! -type l -exec chmod u-s,g=u,g-ws,o-w {} + || return 1
  if [ -n "$tsl_static" ] && [ -d "$tsl_rel/$tsl_static" ]; then
    tsl_static=$tsl_rel/$tsl_static
    find "$tsl_rel" -path "$tsl_static" -prune -o ! -type l -exec chmod o= {} + || return 1
    find "$tsl_static" -type d -exec chmod o+x {} + || return 1
    tsl_p=$tsl_static
    while [ "$tsl_p" != "$tsl_rel" ]; do
      tsl_p=${tsl_p%/*}
      chmod o+x "$tsl_p" || return 1
    done
  else
    find "$tsl_rel" ! -type l -exec chmod o= {} + || return 1
  fi
  find "$tsl_rel" -exec chgrp -h "$3" {} +
}

# task_switch CURRENT ID: CURRENT (a link) points at releases/ID, switched in one rename.
task_switch() {
  ln -sfn "releases/$2" "$1.stack-new" && mv -fT "$1.stack-new" "$1"
}

# task_switch_back CURRENT ID UNIT: after a failed health gate, the previous release ID is live
# again and the app's UNIT restarted on it (restarted even when the switch failed).
task_switch_back() {
  task_switch "$1" "$2" && systemctl reset-failed "$3" 2>/dev/null
  systemctl restart "$3"
}

# task_static_file DIR: the path ("./...") of one file in DIR that nginx can be asked for, when
# DIR holds one with a name needing no escaping in a URL; nothing otherwise.
task_static_file() {
  # shellcheck disable=SC2015 # no such file (or folder) is an answer too, not a failure
  cd "$1" 2>/dev/null && find . -type f ! -path '*/.*' | grep -m 1 -E '^\./[A-Za-z0-9_./-]+$' || true
}

# task_prune RELEASES CURRENT VENVS KEEP NEW: releases that never went live (no manifest) go
# first, then all but the newest KEEP, never the live one nor NEW; then the virtualenvs no
# release left links to. Prints what it removed, one per line.
task_prune() {
  cd "$1" || return 0
  tp_live=$(readlink "$2")
  tp_live=${tp_live##*/}
  for tp_r in *; do
    [ -f "$tp_r/.stack-release.json" ] || [ "$tp_r" = "$tp_live" ] || [ "$tp_r" = "$5" ] || {
      rm -rf "$tp_r"
      echo "$tp_r"
    }
  done
  # shellcheck disable=SC2012 # release ids are timestamps: no name ls could garble
  ls -1 | sort -r | tail -n +"$(($4 + 1))" | while read -r tp_r; do
    [ "$tp_r" = "$tp_live" ] || [ "$tp_r" = "$5" ] || {
      rm -rf "$tp_r"
      echo "$tp_r"
    }
  done
  tp_used=" $(for tp_l in "$1"/*/.venv; do [ -L "$tp_l" ] && readlink "$tp_l"; done | sed 's|.*/||' | tr '\n' ' ')"
  for tp_v in "$3"/*; do
    [ -e "$tp_v" ] || continue
    case $tp_used in *" ${tp_v##*/} "*) continue ;; esac
    rm -rf "$tp_v"
    echo "$tp_v"
  done
}
