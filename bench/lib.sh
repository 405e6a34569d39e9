# shellcheck shell=bash
# Helpers shared by bench/big and bench/scale; sourced after
# scripts/services.sh. The callers set pgport (their PostgreSQL cluster),
# nats_url, server_bin and an array pids (the processes their cleanup ends).
# shellcheck disable=SC2154 # those variables

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }
div() { python3 -c "print(f'{$1 / $2:.${3:-2}f}')"; }
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

q() { psql -h 127.0.0.1 -p "$pgport" -U postgres -v ON_ERROR_STOP=1 -Atq "$@"; }
db_url() { echo "postgres://postgres@127.0.0.1:$pgport/$1"; }

# start_big_postgres DIR: starts the cluster in DIR (initdb when new) on
# $pgport, set as a server holding ten million orders would be:
# shared_buffers=1GB, max_wal_size=8GB, checkpoint_timeout=15min; fsync
# stays on.
start_big_postgres() {
  start_postgres "$1" "$pgport"
  q -d postgres -c "ALTER SYSTEM SET shared_buffers = '1GB'" \
    -c "ALTER SYSTEM SET max_wal_size = '8GB'" -c "ALTER SYSTEM SET checkpoint_timeout = '15min'"
  as_postgres "$(pg_bindir)/pg_ctl" -D "$1" -m fast -w restart >/dev/null
}

# migrated_db DB: as bench/run's, so the server finds nothing pending.
migrated_db() {
  q -d postgres -c "DROP DATABASE IF EXISTS $1"
  q -d postgres -c "CREATE DATABASE $1"
  q -d "$1" -c "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)"
  for f in migrations/*/up.sql; do
    q -d "$1" -f "$f"
    version=$(basename "$(dirname "$f")" | cut -d_ -f1 | tr -d -)
    q -d "$1" -c "INSERT INTO __diesel_schema_migrations (version) VALUES ('$version')"
  done
}

# generate DB TOTAL LO HI: writes orders LO..HI of a set of TOTAL
# (bench/generate_varied.sql).
generate() {
  q -d "$1" -v total="$2" -v lo="$3" -v hi="$4" -v prefix= -f bench/generate_varied.sql >/dev/null
}

# has_byte_budget BUDGET: whether a CACHE_MAX_BYTES value is a byte count
# (not unlimited, nor auto, which is half the machine's memory here).
has_byte_budget() { case "${1,,}" in unlimited | auto) return 1 ;; *) return 0 ;; esac; }

# contract_kib MAX_BYTES: the RSS the contract allows a cache of that
# budget (budget × 1.25 + 128 MiB) in KiB; 0 for no budget (the server's
# order_cache_cache_max_bytes says 0 when unlimited).
contract_kib() { python3 -c "print(0 if $1 == 0 else int(($1 * 1.25 + 128 * 1024 * 1024) / 1024))"; }

metric() { curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m { print $2 }'; }
# proc_kib PID FIELD: VmRSS, VmHWM, ... of PID in KiB.
proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# start_server LOG DB STREAM PORT BUDGET WORKERS: the release server in the
# background, its id in server_pid (and in pids).
start_server() {
  WORKER_THREADS=$6 CACHE_MAX_BYTES=$5 DATABASE_URL=$(db_url "$2") NATS_URL=$nats_url \
    LISTEN_ADDR=127.0.0.1:$4 ORDERS_STREAM=$3 ORDERS_SUBJECT="$3.orders" ORDERS_DLQ_SUBJECT="$3.dlq" \
    BATCH_SIZE=1000 DATABASE_MAX_CONNECTIONS=8 RUST_LOG=warn STARTUP_TIMEOUT=600 \
    "$server_bin" >"$1" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  # If memory runs out, this is the process to end, not a neighbour's.
  echo 1000 >"/proc/$server_pid/oom_score_adj" 2>/dev/null || true
}

# alive LOG: fails, showing the end of LOG, when the server has exited.
alive() { kill -0 "$server_pid" 2>/dev/null || { echo "the server exited:" >&2; tail -n 5 "$1" >&2; return 1; }; }

# wait_ready LOG PORT [SECONDS]: until /readyz answers 200 (default: at
# most an hour); fails when the server exits or the time is up.
wait_ready() {
  local until_s=$((SECONDS + ${3:-3600}))
  until curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; do
    alive "$1" || return 1
    [ "$SECONDS" -lt "$until_s" ] || { echo "not ready after ${3:-3600} s" >>"$1"; return 1; }
    sleep 0.05
  done
}

stop_server() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; }
