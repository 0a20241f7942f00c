# The database: PostgreSQL's side of stack. The app's role and database are made here, its lines
# put into pg_hba.conf, and its database backed up, checked and restored. Used two ways: in front
# of root scripts (with lib.sh, whose names it leaves alone), and on its own as the backup program
# /usr/local/lib/stack/db-backup (this file, then a last line `db_main "$@"`), which a systemd
# timer runs as root without lib.sh: so it defines all it needs, and runs nothing by itself.
# Every function runs as root; PostgreSQL's tools run as the postgres user. Names of roles and
# databases (^[a-z][a-z0-9_-]{0,40}$) and locales (^[A-Za-z0-9_.@-]+$) were checked by stack, so
# they go into SQL quoted, with nothing to escape. A failure says on stderr what failed and why,
# returns non-zero, and leaves no half-made file or database behind.
# POSIX sh (Debian's dash); checked with `shellcheck -s sh`.

# db_step TEXT: progress, shown by the client as the current step (lib.sh's step, which the
# backup program does not have).
db_step() { printf '@@step %s\n' "$*"; }

# db_fail WHAT: says on stderr that WHAT failed, and why in the words of the tool that failed
# (left in $db_err by db_pg and db_q, and emptied here). Returns 1, for `|| db_fail .. || return 1`.
db_fail() {
  if [ -n "${db_err:-}" ]; then printf '%s: %s\n' "$1" "$db_err" >&2; else printf '%s\n' "$1" >&2; fi
  db_err=
  return 1
}

# db_pg COMMAND...: COMMAND as the postgres user, from / (it may not read root's folders). Its
# output goes where this function's goes (a dump into its file), its complaints into $db_err,
# in memory: a dump that failed on a full disk still says why. Notices are not asked for.
db_pg() {
  { db_err=$( (cd / && exec runuser -u postgres -- env PGOPTIONS='-c client_min_messages=warning' "$@") 2>&1 1>&3 3>&-); } 3>&1
}

# db_q DB SQL: SQL run in database DB by psql as postgres, stopping at the first error; its rows
# in $db_out, fields split by tabs, or what psql said in $db_err. Only errors are asked for, so
# whatever psql prints when it succeeds is rows.
db_q() {
  db_out=$(cd / && runuser -u postgres -- env PGOPTIONS='-c client_min_messages=error' \
    psql -X -q -v ON_ERROR_STOP=1 -At -F "$(printf '\t')" -d "$1" -c "$2" 2>&1) && return 0
  db_err=$db_out db_out=
  return 1
}

# db_exists DB: $db_here is 1 when database DB exists, 0 when not; fails when PostgreSQL cannot
# be asked.
db_exists() {
  db_q postgres "SELECT count(*) FROM pg_database WHERE datname = '$1'" ||
    db_fail "cannot ask PostgreSQL whether database $1 exists" || return 1
  db_here=$db_out
}

# db_drop DB: database DB gone, if it was there, with whoever was connected to it (only scratch
# databases and replaced ones are dropped).
db_drop() {
  db_q postgres "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" || db_fail "cannot drop database $1" || return 1
}

# db_tables_in DB: $db_tables, how many tables DB has outside PostgreSQL's own schemas.
db_tables_in() {
  db_q "$1" "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')" ||
    db_fail "cannot count the tables of database $1" || return 1
  db_tables=$db_out
}

# db_locale_ok LOCALE: the server has LOCALE, compared as glibc names them (case, and the dash
# of UTF-8, do not matter); else says which locales it has and how to add one.
db_locale_ok() {
  dbl_want=$(printf '%s\n' "$1" | tr '[:upper:]' '[:lower:]' | sed 's/utf-8/utf8/g')
  locale -a 2>/dev/null | tr '[:upper:]' '[:lower:]' | sed 's/utf-8/utf8/g' | grep -qxF "$dbl_want" && return 0
  echo "the locale $1 does not exist on this server; it has: $(locale -a 2>/dev/null | tr '\n' ' ')" >&2
  echo "add it: apt-get install locales, uncomment it in /etc/locale.gen (e.g. 'en_US.UTF-8 UTF-8'), run locale-gen, then systemctl restart postgresql; or choose one it has (database.locale)" >&2
  return 1
}

# db_locale_hint: after a CREATE DATABASE that failed ($db_err), the likely reason when
# PostgreSQL calls a locale invalid that the system has: it was generated after PostgreSQL
# started, and PostgreSQL sees it only once restarted.
db_locale_hint() {
  case ${db_err:-} in
    *'invalid locale name'*) db_err="$db_err
(a locale generated since PostgreSQL started is seen only after: systemctl restart postgresql)" ;;
  esac
}

# db_role ROLE: the app's role, created or set to what it needs: it logs in, and may do nothing
# beyond what it owns. No password: the app is let in by peer authentication on the unix socket,
# so there is none to leak.
db_role() {
  db_q postgres "SELECT count(*) FROM pg_roles WHERE rolname = '$1'" || db_fail "cannot look up the PostgreSQL role $1" || return 1
  dbr_verb=CREATE
  if [ "$db_out" = 1 ]; then dbr_verb=ALTER; fi
  # With PASSWORDFILE (app hosts elsewhere log in over TCP) the password is set from it below.
  dbr_password='PASSWORD NULL'
  if [ -n "${2:-}" ]; then dbr_password=; fi
  db_q postgres "$dbr_verb ROLE \"$1\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS $dbr_password" ||
    db_fail "$dbr_verb ROLE $1 failed" || return 1
  if [ -n "${2:-}" ]; then db_password "$1" "$2" || return 1; fi
}

# db_password ROLE FILE: ROLE's password is the one in FILE (root's alone). The statement goes to
# psql on its stdin, never on a command line, where every user could read it. Nor may it reach
# the server's log (/var/log/postgresql, which group adm reads): first, in the same session, the
# logging that would write it (log_statement = ddl or all, an error's STATEMENT line, a slow
# statement) is turned off for this session alone, which the postgres superuser may do; a SET that
# fails stops psql before the password is sent. Terse errors: psql quotes no statement back.
db_password() {
  [ -s "$2" ] || { echo "there is no password in $2" >&2; return 1; }
  dbp_out=$({
    printf '%s\n' '\set VERBOSITY terse' "SET log_statement = 'none';" "SET log_min_error_statement = 'panic';" \
      'SET log_min_duration_statement = -1;'
    printf 'ALTER ROLE "%s" PASSWORD '"'"'%s'"'"';\n' "$1" "$(cat "$2")"
  } | (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres) 2>&1) ||
    { echo "cannot set the password of PostgreSQL role $1: $dbp_out" >&2; return 1; }
}

# db_cluster_password FILE ROLE [read]: the password the app's role logs in with from app hosts
# elsewhere, made once (32 random bytes as hex: nothing to escape in a URL) in FILE, root's
# alone. A new one is given to ROLE at once when PostgreSQL runs and the role exists. Printed as
# "@@dbpassword VALUE" on this script's output, which only stack reads. With "read" (a dry run)
# nothing is made: a missing one is printed as "-".
db_cluster_password() {
  dcp_new=0
  if [ ! -s "$1" ] && [ "${3:-}" = read ]; then
    echo '@@dbpassword -'
    return 0
  fi
  if [ ! -s "$1" ]; then
    mkdir -p "${1%/*}" || return 1
    if ! { (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$1.new") && mv -f "$1.new" "$1"; }; then
      echo "cannot write $1" >&2
      return 1
    fi
    dcp_new=1
  fi
  # A dry run reads and changes nothing, not even the file's owner or mode.
  if [ "${3:-}" != read ]; then chown root:root "$1" && chmod 0600 "$1" || return 1; fi
  if [ "$dcp_new" = 1 ] && command -v psql >/dev/null 2>&1 &&
    db_q postgres "SELECT count(*) FROM pg_roles WHERE rolname = '$2'" 2>/dev/null && [ "$db_out" = 1 ]; then
    db_password "$2" "$1" || return 1
  fi
  printf '@@dbpassword %s\n' "$(cat "$1")"
}

# db_listen ADDRESSES: PostgreSQL listens on ADDRESSES (localhost and the db host's private
# address), in a file of the cluster's conf.d (read after postgresql.conf); restarted only when
# that changes.
db_listen() {
  db_q postgres 'SHOW config_file' || db_fail 'cannot ask PostgreSQL where its configuration is' || return 1
  dbl_file="${db_out%/*}/conf.d/stack-listen.conf"
  dbl_text="# Managed by stack: app and worker hosts elsewhere connect on the private address.
listen_addresses = '$1'"
  if [ -f "$dbl_file" ] && [ "$(cat "$dbl_file")" = "$dbl_text" ]; then return 0; fi
  mkdir -p "${dbl_file%/*}" && printf '%s\n' "$dbl_text" >"$dbl_file" && chmod 0644 "$dbl_file" || return 1
  systemctl restart postgresql || { echo "PostgreSQL did not restart with listen_addresses = '$1'" >&2; return 1; }
}

# db_revoke_public DB: only DB's owner (and superusers: postgres, for backups) may connect to it.
db_revoke_public() {
  db_q postgres "REVOKE ALL ON DATABASE \"$1\" FROM PUBLIC" || db_fail "cannot revoke PUBLIC's rights on database $1" || return 1
}

# db_create DB ROLE LOCALE: the app's database, owned by its role (so that on PostgreSQL 15 and
# later, where nobody else may create in schema public, the app's first migration can), in UTF-8
# with LOCALE, and only its owner may connect. One that exists is left as it is, but for that.
db_create() {
  db_exists "$1" || return 1
  dbc_new=0
  if [ "$db_here" = 0 ]; then
    db_locale_ok "$3" || return 1
    if ! db_q postgres "CREATE DATABASE \"$1\" OWNER \"$2\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE '$3' LC_CTYPE '$3'"; then
      db_locale_hint
      db_fail "cannot create database $1"
      return 1
    fi
    dbc_new=1
  fi
  db_revoke_public "$1" && return 0
  if [ "$dbc_new" = 1 ]; then db_drop "$1"; fi
  return 1
}

# db_hba ROLE DB: the app's lines (stdin, rendered by stack) go into pg_hba.conf, between the
# marker lines `# BEGIN stack ROLE` and `# END stack ROLE`: in place of the block there, or before
# the first rule (the first match decides), and PostgreSQL reloads it.
db_hba() {
  dbh_block=$(cat && echo .) || { echo 'cannot read the pg_hba.conf lines' >&2; return 1; }
  db_hba_put "$1" "$2" "${dbh_block%.}"
}

# db_hba_b64 ROLE DB: db_hba with its lines in base64 on stdin (as a script's heredoc brings them).
db_hba_b64() {
  dbh_block=$(base64 -d && echo .) || { echo 'the pg_hba.conf lines are not valid base64' >&2; return 1; }
  db_hba_put "$1" "$2" "${dbh_block%.}"
}

# db_hba_put ROLE DB LINES: the work of db_hba. The new file is written next to the old one, with
# its owner and mode, and renamed over it; PostgreSQL then reads it as it would on reload
# (pg_hba_file_rules): a rule it refuses puts the old file back, the errors said, and nothing is
# reloaded. A file that would not change is not touched.
db_hba_put() {
  dbh_lines=$3
  case $dbh_lines in '' | *'
') ;; *) dbh_lines="$dbh_lines
" ;; esac
  db_q postgres 'SHOW hba_file' || db_fail 'cannot ask PostgreSQL where pg_hba.conf is' || return 1
  dbh_file=$db_out
  [ -f "$dbh_file" ] || { echo "PostgreSQL's pg_hba.conf, $dbh_file, is not a file" >&2; return 1; }
  dbh_have=0
  if grep -qxF "# BEGIN stack $1" "$dbh_file"; then dbh_have=1; fi
  dbh_new=$(mktemp "$dbh_file.stack-new.XXXXXX") || { echo "cannot write next to $dbh_file" >&2; return 1; }
  # One pass: the block replaces the first marked one (any other marked one goes), or, when there
  # is none, comes before the first line that is neither a comment nor blank (or at the end).
  if ! DB_HBA_LINES=$dbh_lines awk -v b="# BEGIN stack $1" -v e="# END stack $1" -v have="$dbh_have" '
    function put() { print b; printf "%s", ENVIRON["DB_HBA_LINES"]; print e; done = 1 }
    skip { if ($0 == e) skip = 0; next }
    $0 == b { if (!done) put(); skip = 1; next }
    !have && !done && !/^[ \t]*#/ && !/^[ \t]*$/ { put() }
    { print }
    END { if (skip) exit 3; if (!done) put() }' "$dbh_file" >"$dbh_new"; then
    rm -f "$dbh_new"
    echo "$dbh_file has a line '# BEGIN stack $1' without its '# END stack $1' (or could not be written): fix it by hand" >&2
    return 1
  fi
  if cmp -s "$dbh_new" "$dbh_file"; then
    rm -f "$dbh_new"
    return 0
  fi
  dbh_old=
  if ! { dbh_old=$(mktemp "$dbh_file.stack-old.XXXXXX") && cp -p "$dbh_file" "$dbh_old" &&
    chown --reference="$dbh_file" "$dbh_new" && chmod --reference="$dbh_file" "$dbh_new" &&
    mv -f "$dbh_new" "$dbh_file"; }; then
    rm -f "$dbh_new" ${dbh_old:+"$dbh_old"}
    echo "cannot replace $dbh_file" >&2
    return 1
  fi
  if db_q postgres 'SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL' && [ "$db_out" = 0 ]; then
    rm -f "$dbh_old"
  else
    db_q postgres "SELECT string_agg('line ' || line_number || ': ' || error, '; ') FROM pg_hba_file_rules WHERE error IS NOT NULL"
    mv -f "$dbh_old" "$dbh_file"
    echo "PostgreSQL refuses $dbh_file with the lines of $1 for $2 (${db_out:-$db_err}); the previous file is back" >&2
    db_err=
    return 1
  fi
  db_q postgres 'SELECT pg_reload_conf()' || db_fail 'PostgreSQL did not reload its configuration' || return 1
}

# db_dir DIR: the backup folder, root's alone (0700, like the folders made above it) when it has
# to be made.
db_dir() {
  [ -d "$1" ] || (umask 077 && mkdir -p "$1") || { echo "cannot make the backup folder $1" >&2; return 1; }
}

# db_lock DIR: waits (an hour at most) for the other backups and restores of DIR to finish;
# the lock is held on fd 9, open on DIR/.lock, until the caller's subshell ends.
db_lock() {
  flock -n 9 && return 0
  db_step "waiting for another backup or restore in $1 to finish"
  flock -w 3600 9 || { echo "another backup or restore in $1 held its lock for an hour" >&2; return 1; }
}

# db_backup DIR DB KIND KEEP VERIFY ID: a backup of database DB into DIR, as ID.dump (pg_dump's
# custom format) and ID.meta (kind, db, bytes, seconds, tables, created: key=value lines), both
# root's 0600. ID - makes one from the time and KIND. VERIFY full restores it into a scratch
# database and counts its tables; list only reads its table of contents (tables then -). The
# newest KEEP backups of KIND stay; the database a restore replaced (DB__previous) goes.
# Prints `@@backup ID BYTES TABLES`.
db_backup() {
  case $4 in '' | *[!0-9]*) echo "KEEP must be a number of backups, not '$4'" >&2; return 1 ;; esac
  [ "$4" -ge 1 ] || { echo 'KEEP must be at least 1: the new backup would go at once' >&2; return 1; }
  case $5 in full | list) ;; *) echo "VERIFY must be full or list, not '$5'" >&2; return 1 ;; esac
  case $6 in '' | .* | *[!A-Za-z0-9_.-]*) echo "'$6' cannot be a backup's id" >&2; return 1 ;; esac
  db_dir "$1" || return 1
  (db_lock "$1" && db_backup_locked "$@") 9>"$1/.lock"
}

# db_backup_locked DIR DB KIND KEEP VERIFY ID: db_backup's work, under the lock. A temporary
# file in DIR (.tmp.*) is the remains of one that was killed: nobody else writes there now.
db_backup_locked() {
  rm -f "$1"/.tmp.*
  dbb_id=$6
  if [ "$dbb_id" = - ]; then
    dbb_id=$(date -u +%Y%m%dT%H%M%SZ)-$3
    db_next_id "$1" "$dbb_id"
    if [ "$db_n" -gt 1 ]; then dbb_id=$dbb_id-$db_n; fi
  elif [ -e "$1/$dbb_id.dump" ]; then
    echo "there is a backup $dbb_id in $1 already" >&2
    return 1
  fi
  db_exists "$2" || return 1
  [ "$db_here" = 1 ] || { echo "there is no database $2 to back up" >&2; return 1; }
  db_backup_files "$@" || {
    rm -f "$1"/.tmp.*
    return 1
  }
  db_prune "$1" "$3" "$4" "$dbb_id" || return 1
  db_exists "${2}__previous" || return 1
  if [ "$db_here" = 1 ]; then
    db_step "drop database ${2}__previous (the one the last restore replaced)"
    db_drop "${2}__previous" || return 1
  fi
  printf '@@backup %s %s %s\n' "$dbb_id" "$dbb_bytes" "$dbb_tables"
}

# db_next_id DIR BASE: $db_n, 1 when no backup in DIR has the id BASE, else one more than the
# highest N of the ids BASE-N there: a later backup of the same second sorts after the others
# (sort -V), even when one of them was pruned.
db_next_id() {
  db_n=1
  for dbn_f in "$1/$2".dump "$1/$2".meta "$1/$2"-*.dump "$1/$2"-*.meta; do
    [ -e "$dbn_f" ] || continue
    dbn_f=${dbn_f##*/}
    dbn_f=${dbn_f%.*}
    dbn_f=${dbn_f#"$2"}
    dbn_f=${dbn_f#-}
    case $dbn_f in '') dbn_f=1 ;; *[!0-9]*) continue ;; esac
    if [ "$dbn_f" -ge "$db_n" ]; then db_n=$((dbn_f + 1)); fi
  done
}

# db_backup_files DIR DB KIND KEEP VERIFY: the dump and its metadata as $dbb_id in DIR. Each is
# written to a temporary file, put on disk (sync) and only then renamed in: a dump cut short (a
# full disk fails pg_dump) is never taken for a backup. The metadata goes first, so a dump that
# is there always has it.
db_backup_files() {
  db_step "backup $dbb_id of database $2: pg_dump"
  dbb_tmp=$(mktemp -p "$1" .tmp.XXXXXXXX) || { echo "cannot write in $1" >&2; return 1; }
  dbb_created=$(date +%s) dbb_t0=$(date +%s.%N)
  db_pg pg_dump -Fc -d "$2" >"$dbb_tmp" || db_fail "pg_dump of database $2 failed" || return 1
  sync "$dbb_tmp" || { echo "cannot put the dump of $2 on disk in $1" >&2; return 1; }
  dbb_bytes=$(stat -c %s "$dbb_tmp")
  [ "$dbb_bytes" -gt 0 ] || { echo "pg_dump wrote nothing for $2" >&2; return 1; }
  if [ "$5" = full ]; then
    db_verify "$2" "$dbb_tmp" || return 1
    dbb_tables=$db_tables
  else
    db_step "backup $dbb_id: check that pg_restore reads it"
    db_pg pg_restore --list <"$dbb_tmp" >/dev/null || db_fail "the dump of $2 cannot be read back (pg_restore --list)" || return 1
    dbb_tables=-
  fi
  dbb_secs=$(awk -v a="$dbb_t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  dbb_meta=$(mktemp -p "$1" .tmp.XXXXXXXX) || { echo "cannot write in $1" >&2; return 1; }
  if ! { printf 'kind=%s\ndb=%s\nbytes=%s\nseconds=%s\ntables=%s\ncreated=%s\n' \
    "$3" "$2" "$dbb_bytes" "$dbb_secs" "$dbb_tables" "$dbb_created" >"$dbb_meta" && sync "$dbb_meta"; }; then
    echo "cannot write the metadata of backup $dbb_id in $1" >&2
    return 1
  fi
  mv -f "$dbb_meta" "$1/$dbb_id.meta" || return 1
  mv -f "$dbb_tmp" "$1/$dbb_id.dump" || { rm -f "$1/$dbb_id.meta"; return 1; }
  # The renames on disk too; the files themselves already are, so the backup stands either way.
  sync "$1" || true
}

# db_verify DB FILE: the dump FILE of database DB restored into a scratch database, DB__verify
# (same owner, encoding and locale as DB), whose tables are counted against DB's now; the scratch
# database is dropped. $db_tables: how many. A dump that does not restore, or restores another
# number of tables, fails. The restore runs as DB's owner (the app's role), never as a
# superuser: a restore runs code the dump holds (an index over a function of the app's), and
# that code must not get more rights than the app has.
db_verify() {
  dbv_db=${1}__verify
  db_step "backup: restore it into $dbv_db and count its tables"
  db_q postgres "SELECT pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$1'" ||
    db_fail "cannot read the encoding and locale of $1" || return 1
  dbv_tab=$(printf '\t')
  dbv_enc=${db_out%%"$dbv_tab"*} dbv_rest=${db_out#*"$dbv_tab"}
  dbv_coll=${dbv_rest%%"$dbv_tab"*} dbv_rest=${dbv_rest#*"$dbv_tab"}
  dbv_ctype=${dbv_rest%%"$dbv_tab"*} dbv_owner=${dbv_rest#*"$dbv_tab"}
  db_drop "$dbv_db" || return 1
  db_q postgres "CREATE DATABASE \"$dbv_db\" OWNER \"$dbv_owner\" TEMPLATE template0 ENCODING '$dbv_enc' LC_COLLATE '$dbv_coll' LC_CTYPE '$dbv_ctype'" ||
    db_fail "cannot create the scratch database $dbv_db" || return 1
  if ! db_pg pg_restore --no-owner --no-acl --role="$dbv_owner" --exit-on-error -d "$dbv_db" <"$2" >/dev/null; then
    db_fail "the dump of $1 does not restore (into $dbv_db)"
    db_drop "$dbv_db"
    return 1
  fi
  db_tables_in "$dbv_db" || { db_drop "$dbv_db"; return 1; }
  dbv_got=$db_tables
  db_drop "$dbv_db" || return 1
  db_tables_in "$1" || return 1
  [ "$dbv_got" = "$db_tables" ] || {
    echo "the dump of $1 restores $dbv_got tables, but $1 has $db_tables" >&2
    return 1
  }
}

# db_prune DIR KIND KEEP NEW: of the backups of KIND in DIR (their .meta says the kind), the one
# just made (NEW) and the newest KEEP-1 others stay (ids begin with their time: sort -V puts
# ID-10 after ID-9); older ones go, with their metadata. Metadata without its dump (a backup cut
# short between its two renames) goes too.
db_prune() {
  for dbp_meta in "$1"/*.meta; do
    [ -f "$dbp_meta" ] || continue
    dbp_id=${dbp_meta##*/}
    dbp_id=${dbp_id%.meta}
    if [ ! -f "$1/$dbp_id.dump" ]; then
      rm -f "$dbp_meta"
    elif [ "$dbp_id" != "$4" ] && [ "$(sed -n 's/^kind=//p' "$dbp_meta")" = "$2" ]; then
      printf '%s\n' "$dbp_id"
    fi
  done | sort -rV | tail -n +"$3" | while read -r dbp_id; do
    db_step "remove backup $dbp_id (the newest $3 of kind $2 stay)"
    rm -f "$1/$dbp_id.dump" "$1/$dbp_id.meta" || exit 1
  done
}

# db_restore DIR DB ROLE LOCALE ID: backup ID of DIR becomes database DB (the caller has stopped
# the app). It is restored into a new database, DB__restoring (owned by ROLE, UTF-8, LOCALE, its
# objects ROLE's), which then takes DB's name; DB stays as DB__previous until the next backup or
# restore (db_swap_back puts it back). Prints `@@restored ID TABLES`.
db_restore() {
  [ -f "$1/$5.dump" ] || { echo "there is no backup $5 in $1" >&2; return 1; }
  (db_lock "$1" && db_restore_locked "$@") 9>"$1/.lock"
}

# db_restore_locked DIR DB ROLE LOCALE ID: db_restore's work, under the lock. The dump is root's
# (0600): pg_restore reads it on stdin.
db_restore_locked() {
  [ -f "$1/$5.dump" ] || { echo "there is no backup $5 in $1 any more" >&2; return 1; }
  dbx_new=${2}__restoring
  db_locale_ok "$4" || return 1
  db_step "restore $5 into a new database $dbx_new"
  db_drop "$dbx_new" || return 1
  if ! db_q postgres "CREATE DATABASE \"$dbx_new\" OWNER \"$3\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE '$4' LC_CTYPE '$4'"; then
    db_locale_hint
    db_fail "cannot create database $dbx_new"
    return 1
  fi
  if ! db_pg pg_restore --no-owner --no-acl --role="$3" --exit-on-error -d "$dbx_new" <"$1/$5.dump" >/dev/null; then
    db_fail "pg_restore of backup $5 into $dbx_new failed"
    db_drop "$dbx_new"
    return 1
  fi
  if ! { db_revoke_public "$dbx_new" && db_tables_in "$dbx_new"; }; then
    db_drop "$dbx_new"
    return 1
  fi
  dbx_tables=$db_tables
  db_step "$dbx_new becomes $2 (the database it replaces stays as ${2}__previous)"
  if ! { db_drop "${2}__previous" && db_exists "$2"; }; then
    db_drop "$dbx_new"
    return 1
  fi
  # One transaction: both renames or neither. A rename waits (5 s) for the sessions it ends.
  dbx_sql="ALTER DATABASE \"$dbx_new\" RENAME TO \"$2\""
  if [ "$db_here" = 1 ]; then
    dbx_sql="SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$2' AND pid <> pg_backend_pid();
ALTER DATABASE \"$2\" RENAME TO \"${2}__previous\"; $dbx_sql"
  fi
  db_q postgres "$dbx_sql" || {
    db_fail "cannot swap $dbx_new in for $2"
    db_drop "$dbx_new"
    return 1
  }
  printf '@@restored %s %s\n' "$5" "$dbx_tables"
}

# db_swap_back DB: undoes the last restore's swap (the app was not healthy on the restored
# database): DB__previous becomes DB again, and the restored one is dropped.
db_swap_back() {
  db_exists "${1}__previous" || return 1
  [ "$db_here" = 1 ] || { echo "there is no database ${1}__previous to put back" >&2; return 1; }
  db_step "database ${1}__previous becomes $1 again"
  db_drop "${1}__restoring" && db_exists "$1" || return 1
  dbw_sql="ALTER DATABASE \"${1}__previous\" RENAME TO \"$1\""
  if [ "$db_here" = 1 ]; then
    dbw_sql="SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$1' AND pid <> pg_backend_pid();
ALTER DATABASE \"$1\" RENAME TO \"${1}__restoring\"; $dbw_sql"
  fi
  db_q postgres "$dbw_sql" || db_fail "cannot put ${1}__previous back as $1" || return 1
  db_drop "${1}__restoring"
}

# db_record_failure DIR UNIT: a failed backup, recorded for stack status in DIR/.failed (0600,
# renamed in whole): the time (epoch) on its first line, then the last 20 lines UNIT's failed run
# wrote to the journal, without the two lines runuser logs for each command it runs as postgres
# (they would leave little room for the one that says why).
db_record_failure() {
  db_dir "$1" || return 1
  dbf_tmp=$(mktemp -p "$1" .failed.XXXXXXXX) || { echo "cannot write in $1" >&2; return 1; }
  # Only the failed run's lines (its invocation, systemd's own lines about it included), without
  # the progress markers: what is left says why.
  dbf_inv=$(systemctl show -p InvocationID --value "$2" 2>/dev/null)
  if { date +%s && if [ -n "$dbf_inv" ]; then
    journalctl -o cat --no-pager "_SYSTEMD_INVOCATION_ID=$dbf_inv" + "INVOCATION_ID=$dbf_inv"
  else
    journalctl -u "$2" -n 200 -o cat --no-pager
  fi | grep -v -e '^pam_unix(runuser:session): session ' -e '^@@' | tail -n 20; } >"$dbf_tmp" &&
    mv -f "$dbf_tmp" "$1/.failed"; then
    return 0
  fi
  rm -f "$dbf_tmp"
  echo "cannot record the failure of $2 in $1/.failed" >&2
  return 1
}

# db_main ARGS: the backup program's entry point, run as root by the app's backup timer
# (`backup DIR DB KIND KEEP VERIFY`) and by the unit that records its failures (`failed DIR UNIT`).
db_main() {
  export LC_ALL=C
  umask 077
  case ${1:-} in
    backup) if [ $# -eq 6 ]; then
      db_backup "$2" "$3" "$4" "$5" "$6" -
      return
    fi ;;
    failed) if [ $# -eq 3 ]; then
      db_record_failure "$2" "$3"
      return
    fi ;;
  esac
  echo 'usage: db-backup backup DIR DB KIND KEEP full|list' >&2
  echo '       db-backup failed DIR UNIT' >&2
  exit 2
}
