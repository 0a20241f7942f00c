# Shell functions for building, sealing and converting releases on the server.
# src/apply/scripts.ts puts this file into the root scripts it sends; every value comes in as
# an argument. POSIX sh (Debian's dash); checked with `shellcheck -s sh`.

# free_kib DIR: the KiB root may still use on DIR's filesystem.
free_kib() {
  df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print $4 }'
}

# no_space_note DIR [LOG]: says so when a full disk is why a step failed (its own messages are
# often only "exit 1", or lost because the log could not be written either).
no_space_note() {
  nsn_free=$(free_kib "$1")
  if { [ -n "${2:-}" ] && grep -q 'No space left on device' "$2" 2>/dev/null; } || [ "${nsn_free:-0}" -lt 2048 ]; then
    echo "No space left on device: $(( ${nsn_free:-0} / 1024 )) MiB free on the filesystem of $1" >&2
  fi
}

# receive FILE IDLE: copies stdin into FILE. A connection that died without a word leaves stdin
# open for hours (no keepalive reaches a blocked read), so this gives up when nothing has
# arrived for IDLE seconds: status 2. Any other failure (a full disk) is cat's status.
receive() {
  exec 3<&0
  cat <&3 >"$1" &
  rcv_cat=$!
  exec 3<&-
  (
    last=-1 idle=0
    while kill -0 "$rcv_cat" 2>/dev/null; do
      sleep 1
      size=$(stat -c %s "$1" 2>/dev/null || echo 0)
      if [ "$size" = "$last" ]; then idle=$((idle + 1)); else idle=0 last=$size; fi
      if [ "$idle" -ge "$2" ]; then kill "$rcv_cat"; exit 0; fi
    done
  ) >/dev/null 2>&1 &
  rcv_watch=$!
  wait "$rcv_cat"
  rcv_status=$?
  kill "$rcv_watch" 2>/dev/null
  if [ "$rcv_status" -gt 128 ]; then return 2; fi
  return "$rcv_status"
}

# seal DIR GROUP [STATIC]: makes a release root's and read-only to GROUP (the app's):
# - the group gets what the owner could read and run locally, never write;
# - others (nginx) get nothing, except in the STATIC folder (relative to DIR), whose files keep
#   what others could read locally, plus a way through its folders and those above it;
# - set-id bits go; DIR/.stack (the recorded configuration, root's alone, with the owners the
#   files had live) is set aside meanwhile and comes back as it was.
# Ownership goes to root:root FIRST, with chown's own walk that never follows a link: from then
# on nobody but root can change anything in the tree, so the passes after it cannot be raced
# into following a planted symlink.
seal() {
  sl_dir=$1 sl_group=$2 sl_static=${3:-} sl_aside=
  if [ -d "$sl_dir/.stack" ] && [ ! -L "$sl_dir/.stack" ]; then
    sl_aside=${sl_dir%/*}/.${sl_dir##*/}.stack
    rm -rf "$sl_aside" && mv "$sl_dir/.stack" "$sl_aside" || return 1
  fi
  sl_status=0
  chown -R -h -P root:root "$sl_dir" || sl_status=1
  sl_keep=
  if [ -n "$sl_static" ] && [ -d "$sl_dir/$sl_static" ] &&
    [ "$(realpath -e "$sl_dir/$sl_static")" = "$(realpath -e "$sl_dir")/$sl_static" ]; then
    sl_keep=$sl_dir/$sl_static
  fi
  if [ "$sl_status" = 0 ]; then
    find "$sl_dir" ! -type l -exec chmod u-s,g=u,g-ws,o-w {} + || sl_status=1
  fi
  if [ "$sl_status" = 0 ] && [ -n "$sl_keep" ]; then
    find "$sl_dir" -samefile "$sl_keep" -prune -o ! -type l -exec chmod o= {} + || sl_status=1
    # Folders are not in the upload (only files are), so they have no local mode to keep:
    # nginx may pass through them, not list them.
    find "$sl_keep" -type d -exec chmod o+x {} + || sl_status=1
    sl_p=$sl_keep
    while [ "$sl_status" = 0 ] && [ "$sl_p" != "$sl_dir" ]; do
      sl_p=${sl_p%/*}
      chmod o+x "$sl_p" || sl_status=1
    done
  elif [ "$sl_status" = 0 ]; then
    find "$sl_dir" ! -type l -exec chmod o= {} + || sl_status=1
  fi
  if [ "$sl_status" = 0 ]; then
    find "$sl_dir" -exec chgrp -h "$sl_group" {} + || sl_status=1
  fi
  if [ -n "$sl_aside" ]; then mv "$sl_aside" "$sl_dir/.stack" || sl_status=1; fi
  return "$sl_status"
}

# convert_release DIR GROUP [STATIC]: seals a release made before releases were sealed (when the
# app's user owned it), while it may be live. Its recorded configuration is trusted only if it
# is still root's own 0700 folder as activation made it: the app's user could have renamed the
# real one away and planted its own (root can neither be made to own a file nor to move one).
convert_release() {
  cr_dir=$1
  if [ -L "$cr_dir" ]; then rm -f "$cr_dir"; return 0; fi
  [ -d "$cr_dir" ] || return 0
  # First no more renames inside it, then look at what is there.
  chown root:root "$cr_dir" && chmod 0750 "$cr_dir" || return 1
  if [ -L "$cr_dir/.stack" ] || { [ -e "$cr_dir/.stack" ] && [ "$(stat -c %U:%a "$cr_dir/.stack")" != root:700 ]; }; then
    echo "@@note release ${cr_dir##*/}: its recorded configuration is not the one stack made (not root's own), so it is removed and the release can no longer be rolled back to"
    rm -rf "$cr_dir/.stack"
  fi
  seal "$cr_dir" "$2" "${3:-}"
}

# convert_media DIR APP WEB: uploads made when nginx read them through the app's group go to
# nginx's group, which new uploads then inherit (setgid). The app sets the bits on its own
# folders; root changes the group without following links.
convert_media() {
  # Best effort for the bits: a file the app does not own keeps its mode.
  runuser -u "$2" -- find "$1" -type d -exec chmod g+s,g-w {} + 2>/dev/null
  runuser -u "$2" -- find "$1" -type f -exec chmod g-w {} + 2>/dev/null
  chgrp -R -h -P "$3" "$1" || return 1
  # The app could not keep the bit on the top folder, already nginx's group (it is not a
  # member); its parent is root's by now, so the path cannot be swapped for a link.
  if [ ! -L "$1" ]; then chmod g+s "$1"; fi
}

# check_sealed TARGET PATH...: a release is trusted only when every PATH (its folder, the folders
# above it, its recorded configuration) is root's and no link: in the layout of before, the
# app's user could plant a configuration that a rollback would install as root.
check_sealed() {
  cs_target=$1
  shift
  for p in "$@"; do
    if [ -L "$p" ] || [ "$(stat -c %U "$p" 2>/dev/null)" != root ]; then
      fail "release $cs_target is not sealed (this server has the layout of an earlier stack): run stack deploy once, which converts it, then roll back"
    fi
  done
}

# restore_config REL: puts back the files and links a release went live with (recorded in
# REL/.stack), each remembered first. Restored files are root's and writable by root alone,
# whatever a record of an earlier layout says (the environment file was the app's then).
restore_config() {
  rc_config=$1/.stack/config
  (cd "$rc_config" && find . -type f | sed 's|^\.||') >"$TMPD/files" || return 1
  while read -r p; do
    rc_src=$rc_config$p
    rc_want=$(printf '%o:root:%s' "$((0$(stat -c %a "$rc_src") & ~022))" "$(stat -c %G "$rc_src")")
    if ! cmp -s "$rc_src" "$p" || [ "$rc_want" != "$(stat -c %a:%U:%G "$p" 2>/dev/null)" ]; then
      mkdir -p "$(dirname "$p")"
      remember "$p"
      if ! { cp -a "$rc_src" "$p.stack-new.$$" && chown root "$p.stack-new.$$" && chmod go-w "$p.stack-new.$$" && mv -f "$p.stack-new.$$" "$p"; }; then
        abort "restore $p"
      fi
      printf '@@step restored %s\n' "$p"
    fi
  done <"$TMPD/files"
  while read -r l t; do
    if [ "$(readlink "$l")" != "$t" ]; then
      remember "$l"
      if ! { ln -sfn "$t" "$l.stack-new.$$" && mv -fT "$l.stack-new.$$" "$l"; }; then abort "link $l"; fi
    fi
  done <"$1/.stack/links"
}

# receive_release DIR UPLOAD BUILD_USER IDLE: a new, empty release folder DIR (in the releases
# folder) for the build user, and the tarball from stdin into UPLOAD (see receive). A partial
# upload is removed; the message says whether the client went silent or the disk is full.
receive_release() {
  rr_releases=${1%/*}
  if ! { rm -rf "$1" "$2" && install -d -m 0750 -o "$3" -g "$3" "$1"; }; then
    no_space_note "$rr_releases"
    fail 'create release directory'
  fi
  receive "$2" "$4"
  rr_status=$?
  if [ "$rr_status" -eq 2 ]; then
    rm -f "$2"
    echo "nothing arrived for $4 s: the connection to the client was lost" >&2
    fail 'receive release'
  fi
  if [ "$rr_status" -ne 0 ]; then
    rm -f "$2"
    no_space_note "$rr_releases"
    fail 'receive release'
  fi
}

# unpack_release UPLOAD DIR BUILD_USER: root unpacks the developer's tarball into a folder nobody
# else could have touched yet; modes are kept as they were locally, owners are not. Then the
# build user gets it, never following a link.
unpack_release() {
  tar -xzpf "$1" -C "$2" --no-same-owner 2>"$TMPD/build"
  ur_status=$?
  rm -f "$1"
  if [ "$ur_status" -ne 0 ]; then
    build_failed "${2%/*}" 25
    fail 'unpack release'
  fi
  chown -R -h -P "$3:$3" "$2" || fail 'hand the release to the build user'
}

# build_failed RELEASES LINES: why a build step failed: the last LINES of its log, and whether
# the disk holding RELEASES is full.
build_failed() {
  tail -n "$2" "$TMPD/build" >&2
  no_space_note "$1" "$TMPD/build"
}

# build_step RELEASES LINES COMMAND...: a step of the build (COMMAND is its sandbox), its output
# kept in the build log, shown only when it fails. Its stdin is the caller's to give.
build_step() {
  bs_releases=$1 bs_lines=$2
  shift 2
  "$@" >>"$TMPD/build" 2>&1 || {
    build_failed "$bs_releases" "$bs_lines"
    return 1
  }
}

# build_optional COMMAND...: a step of the build whose failure costs only speed (compiled
# Python files); it never fails the build.
build_optional() {
  "$@" >>"$TMPD/build" 2>&1 </dev/null || true
}

# receive_index IDLE: the package index's URL, the first line of stdin, ahead of the tarball. It
# may hold a token, so it never is on a command line (any user of the server can read those): it
# goes into a file in the script's private folder, $INDEX_FILE, which only the pip step reads.
# read takes one byte at a time from a pipe, so the tarball stays whole for receive; like
# receive, it gives up on a client silent for IDLE seconds.
receive_index() {
  INDEX_FILE=$TMPD/index
  # shellcheck disable=SC2016 # the inner shell expands it
  if ! timeout "$1" sh -c 'IFS= read -r ri_line && printf "%s\n" "$ri_line"' >"$INDEX_FILE" || [ ! -s "$INDEX_FILE" ]; then
    echo 'the package index URL did not arrive ahead of the release' >&2
    fail 'receive the package index'
  fi
}

# use_venv REL VENVS DIGEST BUILD_USER: the virtualenv of release REL is VENVS/KEY, KEY naming
# DIGEST (the requirements, the index...) on this server's Python (venv_key); REL/.venv becomes
# a relative link to it. A virtualenv keeps the absolute path it was made at (its scripts'
# first lines, pyvenv.cfg), so it is never moved or copied: every release that needs the same
# one links to it. A sealed one is reused as it is; otherwise whatever an unfinished build left
# there goes, an empty folder is made for the build user, and VENV_BUILD=1 runs the build steps.
use_venv() {
  uv_key=$(venv_key "$3") || {
    echo 'python3 does not run on the server' >&2
    return 1
  }
  VENV=$2/$uv_key VENV_BUILD=0
  rm -rf "$1/.venv" && ln -s "../../${2##*/}/$uv_key" "$1/.venv" || return 1
  if venv_ready "$VENV"; then
    step "virtualenv $(printf '%.12s' "$uv_key") reused (requirements and Python unchanged)"
    return 0
  fi
  VENV_BUILD=1
  rm -rf "$VENV" && install -d -m 0755 -o "$4" -g "$4" "$VENV"
}

# venv_build_step RELEASES LINES WHAT INPUT COMMAND...: a step of building the virtualenv (see
# build_step), run only when use_venv found none to reuse; it fails the script, naming WHAT.
# INPUT "index" gives COMMAND the package index's URL on stdin (receive_index); "-" nothing.
venv_build_step() {
  [ "$VENV_BUILD" = 1 ] || return 0
  vbs_releases=$1 vbs_lines=$2 vbs_what=$3 vbs_input=/dev/null
  if [ "$4" = index ]; then vbs_input=$INDEX_FILE; fi
  shift 4
  step "$vbs_what"
  build_step "$vbs_releases" "$vbs_lines" "$@" <"$vbs_input" || fail "$vbs_what"
}

# seal_venv DIR BUILD_USER: a virtualenv just built becomes root's, as a sealed release does
# (nothing of the build runs any more; owner first, so nothing can be raced), then gets the mark
# that makes it ready (venv_ready). Everyone may read it, nobody but root change it: the app
# runs it, later builds (their hooks, as the build user) import from it; the folder of the
# virtualenvs lets nobody else list them.
seal_venv() {
  pkill -KILL -u "$2" 2>/dev/null
  chown -R -h -P root:root "$1" || return 1
  # A mark the build left would become root's with the rest: only root's own counts.
  rm -f "$1/.stack-venv" &&
    find "$1" ! -type l -exec chmod ug-s,go=u,go-w {} + &&
    printf '%s\n' "${1##*/}" >"$1/.stack-venv" && chmod 0644 "$1/.stack-venv"
}

# finish_venv BUILD_USER: seals the virtualenv use_venv had built ($VENV), if it had one built.
finish_venv() {
  [ "$VENV_BUILD" = 1 ] || return 0
  step 'seal the virtualenv'
  seal_venv "$VENV" "$1" || {
    no_space_note "$VENV"
    return 1
  }
}

# check_venv REL VENVS: the virtualenv REL runs with is one root sealed: its .venv links into
# VENVS to a ready one, or is a folder of its own (a release made before virtualenvs were
# shared, sealed with it).
check_venv() {
  if [ -L "$1/.venv" ]; then
    cv_real=$(realpath -e "$1/.venv" 2>/dev/null) && [ "${cv_real%/*}" = "$(realpath -e "$2")" ] && venv_ready "$cv_real"
  else
    [ -d "$1/.venv" ]
  fi
}

# prune_venvs VENVS RELEASES: removes every virtualenv no release links to any more (those of
# pruned releases, and what failed builds left). Run after the releases were pruned.
prune_venvs() {
  pv_used=" $(for pv_link in "$2"/*/.venv; do
    if [ -L "$pv_link" ]; then readlink "$pv_link"; fi
  done | sed 's|.*/||' | tr '\n' ' ')"
  for pv_venv in "$1"/*; do
    [ -e "$pv_venv" ] || continue
    case $pv_used in *" ${pv_venv##*/} "*) continue ;; esac
    rm -rf "$pv_venv"
  done
}

# mark_built FILE ID: the release script's last word, in root's lock folder: activation goes on
# only with a release whose build finished.
mark_built() {
  printf '%s\n' "$2" >"$1"
}

# is_built FILE ID
is_built() {
  [ "$(cat "$1" 2>/dev/null)" = "$2" ]
}

# seal_release DIR GROUP STATIC BUILD_USER: nothing of the build runs any more, nothing of an
# earlier record stays, and DIR is sealed (see seal).
seal_release() {
  pkill -KILL -u "$4" 2>/dev/null
  rm -rf "$1/.stack" "$1/.stack-release.json"
  seal "$1" "$2" "$3" || {
    no_space_note "${1%/*}"
    return 1
  }
}

# write_file PATH OWNER MODE: PATH from base64 on stdin.
write_file() {
  base64 -d >"$1" && chown "$2" "$1" && chmod "$3" "$1"
}

# write_manifest DIR GROUP JSON: the manifest makes a release complete, so it comes last and
# appears whole (renamed into place).
write_manifest() {
  wm_file=$1/.stack-release.json
  printf '%s\n' "$3" >"$wm_file.new" && chown "root:$2" "$wm_file.new" && chmod 0640 "$wm_file.new" &&
    mv -f "$wm_file.new" "$wm_file"
}

# copy_release FROM DIR: same code, new configuration: a new release whose files are hard links
# to FROM's, without its record and manifest; it appears whole or not at all.
copy_release() {
  if ! { rm -rf "$2" && cp -al "$1" "$2.partial" && rm -rf "$2.partial/.stack" "$2.partial/.stack-release.json" &&
    mv -T "$2.partial" "$2"; }; then
    rm -rf "$2.partial"
    return 1
  fi
}

# has_manifest DIR: a release is complete once its manifest is there.
has_manifest() {
  [ -f "$1/.stack-release.json" ]
}

# has_record DIR: a release can be rolled back to when it is complete and has the configuration
# it went live with.
has_record() {
  [ -f "$1/.stack-release.json" ] && [ -d "$1/.stack/config" ]
}
