#!/usr/bin/env bash
# Records the testdata/*.bin captures from a throwaway PostgreSQL 15 cluster.
# Needs: postgresql-15 (initdb, pg_ctl, psql, pgbench), python3, and asyncpg in
# $PY (default: python3). Traffic stays on 127.0.0.1. See ../README.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(cd "$HERE/.." && pwd)
PY=${PY:-python3}
BIN=/usr/lib/postgresql/15/bin
W=$(mktemp -d /tmp/hoop-pgcap.XXXX); chown postgres "$W"
PGPORT_REAL=55432; RELAY=55433
echo hooppw > "$W/pw"; chown postgres "$W/pw"
runuser -u postgres -- $BIN/initdb -D "$W/data" --auth=scram-sha-256 --pwfile="$W/pw" -U postgres >/dev/null
cat >> "$W/data/postgresql.conf" <<CONF
port = $PGPORT_REAL
listen_addresses = '127.0.0.1'
unix_socket_directories = '$W'
fsync = off
ssl = off
CONF
cat > "$W/data/pg_hba.conf" <<HBA
host all md5user 127.0.0.1/32 md5
host all clearuser 127.0.0.1/32 password
host all all 127.0.0.1/32 scram-sha-256
HBA
runuser -u postgres -- $BIN/pg_ctl -D "$W/data" -l "$W/log" -w start >/dev/null
trap 'runuser -u postgres -- $BIN/pg_ctl -D "$W/data" -m immediate stop >/dev/null; rm -rf "$W"' EXIT
export PGPASSWORD=hooppw PGGSSENCMODE=disable
ADMIN="host=127.0.0.1 port=$PGPORT_REAL user=postgres dbname=postgres sslmode=disable"
psql -q "$ADMIN" -c "set password_encryption='md5'" -c "create role md5user login password 'md5pw'" \
  -c "reset password_encryption" -c "create role clearuser login password 'clearpw'" \
  -c "create role hoop login password 'hooppw'"
psql -q "$ADMIN" -c "create database hoop owner hoop"
pgbench -q -i -s 1 "host=127.0.0.1 port=$PGPORT_REAL user=hoop dbname=hoop sslmode=disable" 2>/dev/null

# record "NAME..." CMD...: run CMD through a fresh relay; connection i is saved
# as the i-th NAME (NAME.fe.bin = client bytes, NAME.be.bin = server bytes).
record() {
  local names=($1); shift
  local dir="$W/cap-${names[0]}"; mkdir -p "$dir"
  "$PY" "$HERE/relay.py" $RELAY $PGPORT_REAL "$dir" & local rp=$!
  # Readiness probe; it becomes connection 1 and is discarded below.
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$RELAY) 2>/dev/null && break; sleep 0.1; done
  "$@" || true
  sleep 0.5; kill $rp; wait $rp 2>/dev/null || true
  local i=2
  for name in "${names[@]}"; do
    cp "$dir/conn-$i.fe.bin" "$OUT/$name.fe.bin"
    if [ -s "$dir/conn-$i.be.bin" ]; then cp "$dir/conn-$i.be.bin" "$OUT/$name.be.bin"; fi
    i=$((i+1))
  done
}
R="host=127.0.0.1 port=$RELAY dbname=hoop"
record "simple" psql -X -q "$R user=hoop sslmode=prefer" -f "$HERE/simple.sql"
record "pgbench-setup pgbench" pgbench -M prepared -c 1 -t 2 -n "$R user=hoop sslmode=disable"
record "extended" "$PY" "$HERE/extended.py" $RELAY
record "md5" psql -X -q "$R user=md5user sslmode=disable password=md5pw" -c "select current_user"
record "cleartext" psql -X -q "$R user=clearuser sslmode=disable password=clearpw" -c "select current_user"
record "cancel cancel-request" timeout -s INT 1 psql -X -q "$R user=hoop sslmode=disable" -c "select pg_sleep(3)"
ls -l "$OUT"/*.bin
