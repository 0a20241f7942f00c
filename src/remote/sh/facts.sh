# Facts: read-only questions to a server, each answered as tab-separated records on stdout
# (the first field names the record). TypeScript sends this file, then one call per question
# with the plan's data as arguments, and parses the records (src/facts/*.ts). Nothing here
# changes the server, except take_lock, which is the one atomic write a deploy starts with.
# POSIX sh (dash on Debian); run locally under dash by test/unit/facts.test.ts.

# fact_file PATH WANTED_SHA256 [secret]: hash, mode, owner and group; the content too (base64)
# when it differs from what we want, unless it is secret (keys never leave the server).
fact_file() {
  if [ -f "$1" ]; then
    fact_sum=$(sha256sum "$1" | cut -c1-64)
    printf 'file\t%s\t%s\t%s\n' "$1" "$fact_sum" "$(stat -c '%a	%U	%G' "$1")"
    if [ "$fact_sum" != "$2" ] && [ "${3:-}" != secret ]; then
      printf 'content\t%s\t' "$1"; base64 -w0 "$1"; printf '\n'
    fi
  else
    printf 'file\t%s\t-\n' "$1"
  fi
}

# fact_link PATH: where a symbolic link points, or - when there is none.
fact_link() {
  printf 'link\t%s\t%s\n' "$1" "$(readlink "$1" 2>/dev/null || echo -)"
}

# fact_dir PATH: mode, owner and group of a folder, or - when missing.
fact_dir() {
  if [ -d "$1" ]; then
    printf 'dir\t%s\t%s\n' "$1" "$(stat -c '%a	%U	%G' "$1")"
  else
    printf 'dir\t%s\t-\n' "$1"
  fi
}

# fact_public PATH: the whole content of a public file (a certificate, certbot's settings).
fact_public() {
  if [ -f "$1" ]; then
    printf 'public\t%s\t' "$1"; base64 -w0 "$1"; printf '\n'
  fi
}

# fact_present PATH: said only when something (a link included) is there.
fact_present() {
  if [ -e "$1" ] || [ -L "$1" ]; then printf 'present\t%s\n' "$1"; fi
}

# fact_user NAME: its groups, comma-separated, or - when there is no such user.
fact_user() {
  if getent passwd "$1" >/dev/null; then
    printf 'user\t%s\t%s\n' "$1" "$(id -nG "$1" | tr ' ' ',')"
  else
    printf 'user\t%s\t-\n' "$1"
  fi
}

# fact_service UNIT: enabled and active states as systemctl words.
fact_service() {
  printf 'service\t%s\t%s\t%s\n' "$1" "$(systemctl is-enabled "$1" 2>/dev/null)" "$(systemctl is-active "$1" 2>/dev/null)"
}

# fact_packages NAME...: dpkg's status of each (ii = installed); unknown ones print nothing.
fact_packages() {
  dpkg-query -W -f='pkg\t${Package}\t${db:Status-Abbrev}\n' "$@" 2>/dev/null || true
}

# fact_system: nginx version, CPUs and the distribution.
fact_system() {
  printf 'nginx\t%s\n' "$(nginx -v 2>&1 | sed -n 's|^nginx version: nginx/||p')"
  printf 'cpus\t%s\n' "$(nproc 2>/dev/null)"
  # shellcheck source=/dev/null
  printf 'os\t%s\n' "$(. /etc/os-release 2>/dev/null && echo "$ID $VERSION_ID")"
}

# fact_firewall: ufw's first status line, when ufw is installed.
fact_firewall() {
  if command -v ufw >/dev/null; then printf 'ufw\t%s\n' "$(ufw status 2>/dev/null | head -n1)"; fi
}

# fact_free PATH: KiB free for root at PATH, or at its nearest existing parent.
fact_free() {
  fact_p=$1
  while [ ! -d "$fact_p" ] && [ -n "$fact_p" ]; do fact_p=${fact_p%/*}; done
  printf 'free\t%s\n' "$(df -Pk "${fact_p:-/}" 2>/dev/null | awk 'NR == 2 { print $4 }')"
}

# fact_live CURRENT RELEASES [SHIPPED_SHA256]: the live release, its manifest, every release's
# id, and the live list of shipped files when its hash differs from the one about to ship.
fact_live() {
  printf 'current\t%s\n' "$(readlink "$1" 2>/dev/null || echo -)"
  if [ -f "$1/.stack-release.json" ]; then
    printf 'manifest\t'; base64 -w0 "$1/.stack-release.json"; printf '\n'
  fi
  fact_ids=''
  for fact_r in "$2"/*; do
    if [ -e "$fact_r" ]; then fact_ids="$fact_ids${fact_r##*/} "; fi
  done
  printf 'releases\t%s\n' "$fact_ids"
  if [ -n "${3:-}" ] && [ -f "$1/.stack-files" ] && [ "$(sha256sum < "$1/.stack-files" | cut -c1-64)" != "$3" ]; then
    printf 'shipped\t'; base64 -w0 "$1/.stack-files"; printf '\n'
  fi
}

# fact_venv VENVS DIGEST CURRENT: the virtualenv a new release with DIGEST would run with on this
# server's Python (venv.sh), whether a sealed one is there to reuse, and the one the live release
# links to; - for what is not known (no python3 yet: its packages come with provisioning; a live
# release with a virtualenv of its own).
fact_venv() {
  fact_key=- fact_state=-
  if fact_key=$(venv_key "$2"); then
    fact_state=absent
    if venv_ready "$1/$fact_key"; then fact_state=ready; fi
  fi
  fact_live=-
  if [ -L "$3/.venv" ]; then fact_live=$(readlink "$3/.venv"); fi
  printf 'venv\t%s\t%s\t%s\n' "${fact_key:--}" "$fact_state" "${fact_live##*/}"
}

# fact_releases CURRENT RELEASES: each release with its manifest (base64, or -) and whether its
# configuration was recorded (1/0), then the live one.
fact_releases() {
  fact_cur=$(readlink "$1" 2>/dev/null | sed 's|^releases/||')
  for fact_d in "$2"/*/; do
    [ -d "$fact_d" ] || continue
    fact_m=-
    if [ -f "$fact_d.stack-release.json" ]; then fact_m=$(base64 -w0 "$fact_d.stack-release.json"); fi
    fact_c=0
    if [ -d "$fact_d.stack/config" ]; then fact_c=1; fi
    printf 'release\t%s\t%s\t%s\n' "$(basename "$fact_d")" "$fact_m" "$fact_c"
  done
  printf 'live\t%s\n' "$fact_cur"
}

# fact_restore RELEASE_DIR CURRENT SECRET_PATH...: what a rollback to RELEASE_DIR would change.
# Each recorded file that differs from the live one, in content or in the attributes it would
# get (root's, go-w), with both contents unless secret; then each link that would move.
fact_restore() {
  fact_rel=$1 fact_current=$2
  shift 2
  fact_secret=" $* "
  cd "$fact_rel/.stack/config" 2>/dev/null || { echo 'no recorded configuration' >&2; exit 1; }
  find . -type f | sed 's|^\.||' | sort | while read -r fact_p; do
    fact_src="$fact_rel/.stack/config$fact_p"
    fact_want=$(printf '%o:root:%s' "$(( 0$(stat -c %a "$fact_src") & ~022 ))" "$(stat -c %G "$fact_src")")
    fact_now=$(stat -c %a:%U:%G "$fact_p" 2>/dev/null || echo -)
    if cmp -s "$fact_src" "$fact_p"; then fact_same=1; else fact_same=0; fi
    [ "$fact_same" = 1 ] && [ "$fact_want" = "$fact_now" ] && continue
    printf 'restore\t%s\t%s\t%s\t%s\n' "$fact_p" "$fact_want" "$fact_now" "$fact_same"
    case "$fact_secret" in *" $fact_p "*) continue ;; esac
    if [ "$fact_same" = 0 ]; then
      printf 'after\t%s\t' "$fact_p"; base64 -w0 "$fact_src"; printf '\n'
      if [ -f "$fact_p" ]; then printf 'before\t%s\t' "$fact_p"; base64 -w0 "$fact_p"; printf '\n'; fi
    fi
  done
  while read -r fact_l fact_t; do
    fact_now=$(readlink "$fact_l" 2>/dev/null || echo -)
    [ "$fact_now" = "$fact_t" ] || printf 'link\t%s\t%s\t%s\n' "$fact_l" "$fact_now" "$fact_t"
  done < "$fact_rel/.stack/links"
  printf 'link\t%s\t%s\t%s\n' "$fact_current" "$(readlink "$fact_current" 2>/dev/null || echo -)" "releases/${fact_rel##*/}"
  cd /
}

# fact_certs CERTIFICATE_FILE DOMAIN...: the certificate on disk, then the one nginx presents for
# each domain (TLS with it as SNI on 127.0.0.1:443), both as base64 PEM.
fact_certs() {
  if [ -f "$1" ]; then printf 'disk\t'; base64 -w0 "$1"; printf '\n'; fi
  shift
  for fact_d in "$@"; do
    printf 'served\t%s\t' "$fact_d"
    timeout 10 openssl s_client -connect 127.0.0.1:443 -servername "$fact_d" </dev/null 2>/dev/null | openssl x509 2>/dev/null | base64 -w0
    printf '\n'
  done
}

# fact_audit FILE N: the last N entries of the audit log (JSON lines).
fact_audit() {
  tail -n "$2" "$1" 2>/dev/null | while IFS= read -r fact_line; do printf 'audit\t%s\n' "$fact_line"; done
}

# lock_report DIR: who holds the deploy lock, whether one of its scripts runs right now (each
# records its pid), and how many seconds ago it last showed life; or that it is free.
lock_report() {
  if [ ! -d "$1" ]; then printf 'lock\tfree\n'; return 0; fi
  lock_running=0
  if [ -f "$1/script.pid" ] && kill -0 "$(cat "$1/script.pid")" 2>/dev/null; then lock_running=1; fi
  lock_seen=$(stat -c %Y "$1/active" 2>/dev/null || stat -c %Y "$1/info" 2>/dev/null || stat -c %Y "$1" 2>/dev/null || date +%s)
  printf 'lock\theld\t%s\t%s\t%s\n' "$(base64 -w0 "$1/info" 2>/dev/null)" "$lock_running" "$(( $(date +%s) - lock_seen ))"
}

# lock_take DIR TOKEN INFO: mkdir is atomic, so exactly one deploy gets the lock. A lock is never
# left half made: one that cannot be written whole is taken back, and a mkdir that failed for
# another reason than "it exists" is an error, not another deploy.
lock_take() {
  lock_parent=${1%/*}
  mkdir -p "$lock_parent" 2>/dev/null
  if lock_err=$(mkdir "$1" 2>&1); then
    if printf '%s\n' "$3" > "$1/info" && printf '%s' "$2" > "$1/token"; then
      printf 'lock\tacquired\n'
    else
      rm -rf "$1"
      printf 'lock\terror\t%s\n' "could not write the deploy lock in $lock_parent (No space left on device?), $(lock_free_mib "$lock_parent") MiB free there"
    fi
  elif [ -d "$1" ]; then
    lock_report "$1"
  else
    printf 'lock\terror\t%s\n' "$(printf '%s' "$lock_err" | tr '\t\n' '  '), $(lock_free_mib "$lock_parent") MiB free there"
  fi
}

lock_free_mib() {
  echo $(( $(df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print $4 }') / 1024 ))
}

# fact_unit UNIT...: each unit's state and for how many seconds it has been in it
# ("unit NAME ACTIVE SUB SECONDS"), for `stack status`.
fact_unit() {
  # Wall-clock times: a container's /proc/uptime and its systemd's monotonic stamps need not
  # share a zero (a suspended host), and the seconds came out negative.
  fu_now=$(date +%s)
  for fu_unit in "$@"; do
    fu_state=$(systemctl show -p ActiveState --value "$fu_unit" 2>/dev/null)
    fu_sub=$(systemctl show -p SubState --value "$fu_unit" 2>/dev/null)
    fu_since=$(TZ=UTC systemctl show -p StateChangeTimestamp --value "$fu_unit" 2>/dev/null)
    fu_at=$(date -d "$fu_since" +%s 2>/dev/null || echo "$fu_now")
    printf 'unit\t%s\t%s\t%s\t%s\n' "$fu_unit" "${fu_state:-unknown}" "${fu_sub:-unknown}" "$((fu_now - fu_at))"
  done
}

# fact_probe URL RESOLVE TIMEOUT: one request through nginx ("probe CODE SECONDS"), as the
# health check makes it, but once and without judging.
fact_probe() {
  printf 'probe\t%s\n' "$(curl -s -k -o /dev/null -w '%{http_code}\t%{time_total}' --max-time "$3" --resolve "$2" "$1")"
}

# fact_disk DIR...: free and total KiB of each DIR's filesystem ("space DIR FREE TOTAL").
fact_disk() {
  for fd_dir in "$@"; do
    df -Pk "$fd_dir" 2>/dev/null | awk -v d="$fd_dir" 'NR == 2 { printf "space\t%s\t%s\t%s\n", d, $4, $2 }'
  done
}

# fact_database ROLE DB: PostgreSQL as the app needs it. "pg STATE VERSION": absent (no psql),
# down (psql cannot ask the server) or up, with the server's major version. When up: the role's
# attributes ("pgrole ROLE super createdb createrole login haspassword replication bypassrls",
# t/f, or "pgrole ROLE -"), the database ("pgdb DB OWNER ENCODING COLLATE PUBLICCONNECT" or
# "pgdb DB -"), each other database the role owns but stack's scratch ones ("pgowned NAME"),
# pg_hba.conf and the base64 of the lines between the role's markers in it ("pghba FILE B64"),
# and "pgprevious DB__previous" while a restore's replaced database is kept.
fact_database() {
  if ! command -v psql >/dev/null 2>&1; then
    printf 'pg\tabsent\t-\n'
    return 0
  fi
  fdb_t=$(printf '\t')
  if ! fdb_info=$(cd / && runuser -u postgres -- psql -X -q -At -F "$fdb_t" -d postgres \
    -c "SELECT current_setting('server_version_num')::int / 10000, current_setting('hba_file')" 2>/dev/null); then
    printf 'pg\tdown\t-\n'
    return 0
  fi
  printf 'pg\tup\t%s\n' "${fdb_info%%"$fdb_t"*}"
  fdb_hba=${fdb_info#*"$fdb_t"}
  (cd / && runuser -u postgres -- psql -X -q -At -F "$fdb_t" -d postgres \
    -c "SELECT 'pgrole', '$1', coalesce((SELECT concat_ws(chr(9), rolsuper, rolcreatedb, rolcreaterole, rolcanlogin,
          rolpassword IS NOT NULL, rolreplication, rolbypassrls) FROM pg_authid WHERE rolname = '$1'), '-')" \
    -c "SELECT 'pgdb', '$2', coalesce((SELECT concat_ws(chr(9), pg_get_userbyid(datdba), pg_encoding_to_char(encoding),
          datcollate, has_database_privilege('public', oid, 'CONNECT')) FROM pg_database WHERE datname = '$2'), '-')" \
    -c "SELECT 'pgowned', datname FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = '$1')
          AND datname <> '$2' AND datname !~ '__(verify|restoring|previous)\$' ORDER BY datname") 2>/dev/null
  printf 'pghba\t%s\t' "$fdb_hba"
  awk -v b="# BEGIN stack $1" -v e="# END stack $1" '$0 == e { on = 0 } on { print } $0 == b { on = 1 }' "$fdb_hba" 2>/dev/null | base64 -w0
  printf '\n'
  (cd / && runuser -u postgres -- psql -X -q -At -d postgres \
    -c "SELECT 'pgprevious' || chr(9) || datname FROM pg_database WHERE datname = '${2}__previous'") 2>/dev/null
  return 0
}

# fact_backups DIR UNITBASE: the app's backups in DIR, newest first, from their metadata
# ("backup ID BYTES CREATED KIND TABLES SECONDS"); the last failure the timer recorded
# ("backupfail EPOCH B64", the journal lines in base64); and the timer's next and last run and
# the last result of its service ("backuptimer NEXT LAST RESULT", times in UTC, - for none).
fact_backups() {
  if [ -d "$1" ]; then
    for fbk_dump in "$1"/*.dump; do
      if [ -f "$fbk_dump" ] && [ -f "${fbk_dump%.dump}.meta" ]; then printf '%s\n' "$fbk_dump"; fi
    done | sort -rV | while read -r fbk_dump; do
      fbk_id=${fbk_dump##*/}
      awk -v id="${fbk_id%.dump}" '
        { k = $0; sub(/=.*/, "", k); v = $0; sub(/^[^=]*=/, "", v); m[k] = v }
        function f(k) { return (k in m) && m[k] != "" ? m[k] : "-" }
        END { printf "backup\t%s\t%s\t%s\t%s\t%s\t%s\n", id, f("bytes"), f("created"), f("kind"), f("tables"), f("seconds") }
      ' "${fbk_dump%.dump}.meta"
    done
    if [ -f "$1/.failed" ]; then
      printf 'backupfail\t%s\t%s\n' "$(head -n 1 "$1/.failed")" "$(tail -n +2 "$1/.failed" | base64 -w0)"
    fi
  fi
  fbk_next=$(TZ=UTC systemctl show "$2.timer" -p NextElapseUSecRealtime --value 2>/dev/null)
  fbk_last=$(TZ=UTC systemctl show "$2.timer" -p LastTriggerUSec --value 2>/dev/null)
  fbk_result=$(systemctl show "$2.service" -p Result --value 2>/dev/null)
  case $fbk_next in '' | n/a) fbk_next=- ;; esac
  case $fbk_last in '' | n/a) fbk_last=- ;; esac
  printf 'backuptimer\t%s\t%s\t%s\n' "$fbk_next" "$fbk_last" "${fbk_result:--}"
}

# fact_parts APP: the units of the app's processes and jobs on the server, desired or not: each
# unit file (`partfile PATH`) and each process instance or job timer systemd knows of, with
# whether it is enabled and active (`partunit UNIT ENABLED ACTIVE`). A process or job gone from
# the inventory is found here, to be stopped and removed.
fact_parts() {
  # APP.NAME: app names have no dot, so another app's units (blog-api.worker@1) never match blog.*.
  for fp_f in /etc/systemd/system/"$1".*@.service /etc/systemd/system/"$1".job.*.service /etc/systemd/system/"$1".job.*.timer; do
    [ -f "$fp_f" ] && printf 'partfile\t%s\n' "$fp_f"
  done
  { systemctl list-units --all --plain --no-legend "$1.*@*.service" "$1.job.*.timer" 2>/dev/null | awk '{ print $1 }'
    for fp_l in /etc/systemd/system/"$1".target.wants/*; do [ -L "$fp_l" ] && printf '%s\n' "${fp_l##*/}"; done
  } | sort -u | while read -r fp_u; do
    case $fp_u in "$1".*@.service | '') continue ;; esac
    printf 'partunit\t%s\t%s\t%s\n' "$fp_u" "$(systemctl is-enabled "$fp_u" 2>/dev/null)" "$(systemctl is-active "$fp_u" 2>/dev/null)"
  done
}

# fact_jobs APP JOB...: each scheduled job's timer and last run, for `stack status`: "job NAME
# TIMER_STATE LAST NEXT SERVICE_STATE RESULT EXIT_STATUS STARTED", times as systemd writes them
# in UTC (Tue 2026-12-01 03:00:04 UTC), - for what systemd does not know (a timer that never
# fired; STARTED: no run since boot, so RESULT is not of one). systemctl show prints properties
# in its own order, whatever the order of -p: they are read by name.
fact_jobs() {
  fj_app=$1
  shift
  for fj_name in "$@"; do
    {
      TZ=UTC systemctl show "$fj_app.job.$fj_name.timer" -p ActiveState -p LastTriggerUSec -p NextElapseUSecRealtime 2>/dev/null | sed 's/^/timer./'
      TZ=UTC systemctl show "$fj_app.job.$fj_name.service" -p ActiveState -p Result -p ExecMainStatus -p ExecMainStartTimestamp 2>/dev/null | sed 's/^/service./'
    } | awk -v name="$fj_name" '
      { k = $0; sub(/=.*/, "", k); v = $0; sub(/^[^=]*=/, "", v); m[k] = v }
      function f(k) { return (k in m) && m[k] != "" && m[k] != "n/a" ? m[k] : "-" }
      END {
        printf "job\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, f("timer.ActiveState"), f("timer.LastTriggerUSec"),
          f("timer.NextElapseUSecRealtime"), f("service.ActiveState"), f("service.Result"), f("service.ExecMainStatus"),
          f("service.ExecMainStartTimestamp")
      }'
  done
}
