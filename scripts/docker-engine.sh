# shellcheck shell=bash
# A Docker engine of the check's own, and the stand-in base images it builds
# from Debian's packages when no registry can be reached. Sourced by
# scripts/check-docker --engine; needs root (dockerd, a network namespace,
# chroot).
#
# The engine runs in a network namespace of its own (`ip netns`), with its
# own data root and socket:
#  - containers reach nothing but each other: the namespace has no link to
#    the machine's network, so the build and the stack cannot send traffic
#    to any other address, whatever an image or a Dockerfile tries;
#  - ports published on 127.0.0.1 are that namespace's loopback, so the
#    stack's 127.0.0.1:4222 and :8080 never collide with a NATS or a server
#    already running on the machine, and the checks reach them with
#    `nsenter --net`;
#  - the stand-in images, which carry the official names, exist only in
#    this engine and go with its data root when the check ends: they never
#    shadow the real images in an engine of the user's.
# So an engine already running on the machine is never used or touched.
#
# The stand-ins (what a run against the real images would differ in is in
# docs/docker.md):
#  debian:bookworm-slim   debootstrap --variant=minbase, trimmed as the
#                         official slim image is (no docs, man pages, apt
#                         lists); its apt reads a local file: repository that
#                         holds the packages the Dockerfile installs, since
#                         the engine's network reaches no mirror
#  rust:1.89.0-bookworm   Debian with build-essential, this machine's Rust
#                         toolchain (whatever version it is), and this
#                         project's crates vendored, read offline
#  postgres:15.3          Debian's PostgreSQL 15 behind an entrypoint that
#                         honours POSTGRES_USER, POSTGRES_PASSWORD,
#                         POSTGRES_DB and PGDATA as the official one does
#  nats:2.10-alpine       Debian's nats-server (2.9) with wget, and the
#                         official entrypoint's rule (arguments that start
#                         with - go to nats-server)

# One engine a check, named by the check's process id, so that two checks
# (two checkouts, CI beside a developer) never share one.
ENGINE_NETNS=order-cache-check-$$
ENGINE_DIR=${ENGINE_DIR:-/var/tmp/order-cache-engine-$$}
STANDIN_CACHE=${STANDIN_CACHE:-$PWD/target/docker-standins}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ENGINE_STARTED=
# Whether /run/netns was a mount point before this check (`ip netns add`
# makes it one, and `ip netns delete` leaves it).
NETNS_MOUNTED_BEFORE=
# The stand-ins' work folder while they are built, for the cleanup.
STANDIN_WORK=

# in_engine_net COMMAND...: runs COMMAND in the engine's network namespace
# (only the network: the mounts and cgroups stay the machine's).
in_engine_net() {
  nsenter --net="/var/run/netns/$ENGINE_NETNS" "$@"
}

engine_start() {
  [ "$(id -u)" = 0 ] || { echo "--engine needs root: dockerd, a network namespace and chroot" >&2; return 1; }
  command -v dockerd >/dev/null || apt_install --no-install-recommends docker.io
  command -v debootstrap >/dev/null || apt_install debootstrap
  command -v dpkg-scanpackages >/dev/null || apt_install --no-install-recommends dpkg-dev
  if [ -S "$ENGINE_DIR/docker.sock" ] && pid_runs "$(cat "$ENGINE_DIR/dockerd.pid" 2>/dev/null)" dockerd; then
    echo "an engine already runs in $ENGINE_DIR: stop it (kill \$(cat $ENGINE_DIR/dockerd.pid)) or choose another ENGINE_DIR" >&2
    return 1
  fi
  reap_stale_engines
  rm -rf "$ENGINE_DIR"
  mkdir -p "$ENGINE_DIR"
  if mountpoint -q /run/netns; then NETNS_MOUNTED_BEFORE=1; fi
  ip netns add "$ENGINE_NETNS" 2>/dev/null || true
  in_engine_net ip link set lo up
  ENGINE_STARTED=1
  in_engine_net dockerd --data-root "$ENGINE_DIR/data" --exec-root "$ENGINE_DIR/exec" \
    --pidfile "$ENGINE_DIR/dockerd.pid" -H "unix://$ENGINE_DIR/docker.sock" \
    >"$ENGINE_DIR/dockerd.log" 2>&1 &
  export DOCKER_HOST=unix://$ENGINE_DIR/docker.sock
  # The classic builder: the engine's own, with no buildx plugin to find.
  export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0
  for _ in $(seq 1 300); do
    docker version >/dev/null 2>&1 && { echo "engine: dockerd $(docker version -f '{{.Server.Version}}') in network namespace $ENGINE_NETNS, data in $ENGINE_DIR"; return 0; }
    sleep 0.1
  done
  echo "dockerd did not answer within 30 s:" >&2
  tail -20 "$ENGINE_DIR/dockerd.log" >&2
  return 1
}

# engine_stop: stops what engine_start started, and forgets its images.
engine_stop() {
  if [ -n "$STANDIN_WORK" ]; then
    # Interrupted while a stand-in was being built: its chroot's /proc.
    unmount_under "$STANDIN_WORK"
    unmount_under "$STANDIN_CACHE"
    rm -rf "$STANDIN_WORK"
    STANDIN_WORK=
  fi
  [ -n "$ENGINE_STARTED" ] || return 0
  engine_remove "$ENGINE_DIR" "$ENGINE_NETNS"
  ENGINE_STARTED=
  # The last namespace gone: /run/netns as it was before.
  if [ -z "$NETNS_MOUNTED_BEFORE" ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
    umount /run/netns 2>/dev/null || true
  fi
}

# engine_remove DIR NETNS: stops the engine of data folder DIR (and its
# containers), unmounts what it mounted, removes its namespace and DIR.
engine_remove() {
  local dir=$1 netns=$2 pid
  pid=$(cat "$dir/dockerd.pid" 2>/dev/null || true)
  if [ -n "$pid" ]; then
    stop_pid "$pid" dockerd 30 || true
  fi
  # dockerd's containerd follows it; wait so that the mounts are gone.
  for _ in $(seq 1 100); do
    pgrep -f "$dir/exec/containerd" >/dev/null || break
    sleep 0.1
  done
  unmount_under "$dir"
  ip netns delete "$netns" 2>/dev/null || true
  rm -rf "$dir"
}

# reap_stale_engines: the engines of checks that were killed (SIGKILL, a
# lost session) and so never stopped theirs: each is named by its check's
# process id, which no longer runs.
reap_stale_engines() {
  local dir pid
  for dir in /var/tmp/order-cache-engine-*; do
    [ -d "$dir" ] || continue
    pid=${dir##*-}
    [[ $pid =~ ^[0-9]+$ ]] || continue
    [ "$pid" != "$$" ] || continue
    if ! pid_runs "$pid" check-docker; then
      echo "removing the engine of a check that was killed (process $pid): $dir"
      engine_remove "$dir" "order-cache-check-$pid"
    fi
  done
}

# unmount_under DIR: unmounts whatever is mounted at or under DIR, deepest
# first.
unmount_under() {
  awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

# rootfs_base DIR: a minbase bookworm root file system in DIR, from a cached
# tarball after the first time.
rootfs_base() {
  local tar=$STANDIN_CACHE/bookworm-minbase.tar
  mkdir -p "$STANDIN_CACHE" "$1"
  if [ ! -s "$tar" ]; then
    local tmp
    tmp=$(mktemp -d "$STANDIN_CACHE/debootstrap.XXXXXX")
    local rc=0
    debootstrap --variant=minbase bookworm "$tmp/root" "$DEBIAN_MIRROR" >"$tmp/log" 2>&1 || rc=$?
    # debootstrap may leave the kernel's file systems mounted in the tree.
    unmount_under "$tmp/root"
    [ "$rc" = 0 ] || { tail -20 "$tmp/log" >&2; return 1; }
    tar -C "$tmp/root" --one-file-system -cf "$tar.part" . && mv "$tar.part" "$tar"
    rm -rf "$tmp"
  fi
  tar -C "$1" -xf "$tar"
}

# chroot_apt DIR PACKAGE...: installs Debian packages into the root file
# system DIR, from the machine's side (the machine reaches Debian's mirror;
# the engine's containers do not). Services are not started.
chroot_apt() {
  local dir=$1
  shift
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod +x "$dir/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  mount -t proc proc "$dir/proc"
  local rc=0
  chroot "$dir" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"' sh "$@" >"$dir.apt.log" 2>&1 || rc=$?
  unmount_under "$dir"
  rm -f "$dir/usr/sbin/policy-rc.d"
  [ "$rc" = 0 ] || { tail -20 "$dir.apt.log" >&2; return 1; }
}

# slim DIR: trims DIR as the official slim images are, and keeps it so for
# later installs.
slim() {
  local dir=$1
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* \
    "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/* \
    "$dir"/usr/share/lintian "$dir/etc/resolv.conf"
  cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
  # As the official images: apt keeps no package caches in a layer.
  cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
}

# import DIR NAME [CHANGE...]: the root file system DIR as image NAME.
import() {
  local dir=$1 name=$2
  shift 2
  local changes=()
  for c in "$@"; do changes+=(--change "$c"); done
  tar -C "$dir" --one-file-system -c . | docker import "${changes[@]}" - "$name" >/dev/null
  echo "stand-in $name: $(docker image inspect -f '{{.Size}}' "$name" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
}

# standin_images: the four stand-ins in the engine, each built once and then
# loaded from $STANDIN_CACHE (`docker save`) while this file, the toolchain
# and Cargo.lock stay the same; delete the folder to build them afresh.
standin_images() {
  local work key
  work=$(mktemp -d /var/tmp/order-cache-standins.XXXXXX)
  STANDIN_WORK=$work
  key=$(cat "${BASH_SOURCE[0]}" Cargo.lock <(rustc -V) | sha256sum | cut -c1-16)
  local name
  for name in debian:bookworm-slim rust:1.89.0-bookworm postgres:15.3 nats:2.10-alpine; do
    local saved=$STANDIN_CACHE/${name//[:\/]/_}-$key.tar
    if [ -s "$saved" ]; then
      docker load -q -i "$saved" >/dev/null
      echo "stand-in $name: loaded from $saved"
      continue
    fi
    "standin_${name%%:*}" "$work" || return 1
    rm -f "$STANDIN_CACHE"/"${name//[:\/]/_}"-*.tar
    docker save -o "$saved.part" "$name" && mv "$saved.part" "$saved"
  done
  rm -rf "$work"
  STANDIN_WORK=
}

standin_debian() {
  local work=$1
  # debian:bookworm-slim, with a local repository of what the Dockerfile's
  # run stage installs (and what those need beyond minbase).
  rootfs_base "$work/slim"
  mkdir -p "$work/slim/var/local/apt"
  cp /etc/resolv.conf "$work/slim/etc/resolv.conf"
  chroot "$work/slim" sh -c 'apt-get update -qq && apt-get install -y -qq --download-only --no-install-recommends -o Dir::Cache::archives=/var/local/apt ca-certificates busybox-static' \
    >"$work/slim.apt.log" 2>&1 || { tail -20 "$work/slim.apt.log" >&2; return 1; }
  rm -rf "$work/slim/var/local/apt/partial" "$work/slim/var/local/apt/lock"
  (cd "$work/slim/var/local/apt" && dpkg-scanpackages --multiversion . /dev/null 2>/dev/null >Packages)
  echo 'deb [trusted=yes] file:/var/local/apt ./' >"$work/slim/etc/apt/sources.list"
  rm -f "$work/slim/etc/apt/sources.list.d/"*
  slim "$work/slim"
  import "$work/slim" debian:bookworm-slim 'CMD ["bash"]'
}

standin_rust() {
  local work=$1
  # rust:1.89.0-bookworm: this machine's toolchain and the project's crates,
  # vendored, at the official image's CARGO_HOME.
  rootfs_base "$work/rust"
  chroot_apt "$work/rust" build-essential ca-certificates
  slim "$work/rust"
  local sysroot
  sysroot=$(rustc --print sysroot)
  mkdir -p "$work/rust/usr/local/rust" "$work/rust/usr/local/cargo/bin"
  cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$work/rust/usr/local/rust/"
  ln -s /usr/local/rust/bin/cargo /usr/local/rust/bin/rustc /usr/local/rust/bin/rustdoc "$work/rust/usr/local/cargo/bin/"
  cargo vendor --locked --versioned-dirs --quiet "$work/rust/usr/local/cargo/vendor" >/dev/null
  cat >"$work/rust/usr/local/cargo/config.toml" <<'EOF'
# The stand-in reads the project's crates from here: the engine's network
# reaches no registry.
[source.crates-io]
replace-with = "vendored"

[source.vendored]
directory = "/usr/local/cargo/vendor"

[net]
offline = true
EOF
  import "$work/rust" rust:1.89.0-bookworm \
    'ENV CARGO_HOME=/usr/local/cargo' \
    'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'CMD ["bash"]'
}

standin_postgres() {
  local work=$1
  rootfs_base "$work/postgres"
  mkdir -p "$work/postgres/etc/postgresql-common"
  echo 'create_main_cluster = false' >"$work/postgres/etc/postgresql-common/createcluster.conf"
  chroot_apt "$work/postgres" postgresql-15
  slim "$work/postgres"
  install -m 0755 /dev/stdin "$work/postgres/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
# Stand-in for the official postgres image's entrypoint: POSTGRES_USER
# (default postgres), POSTGRES_PASSWORD (required, unless
# POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default: the user) and
# PGDATA; the database is made on the first start only.
set -euo pipefail
if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres} db=${POSTGRES_DB:-${POSTGRES_USER:-postgres}}
  method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$method" != trust ]; then
    echo "Error: Database is uninitialized and superuser password is not specified." >&2
    exit 1
  fi
  initdb --username="$user" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") -D "$PGDATA" >/dev/null
  printf 'host all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.auto.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$db" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres -c "CREATE DATABASE \"$db\"" >/dev/null
  fi
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL init process complete; ready for start up."
fi
if [ "${1:-}" = postgres ]; then
  # The official image stops PostgreSQL with SIGINT (STOPSIGNAL), a fast
  # shutdown; an imported image cannot name a stop signal, so SIGTERM is
  # passed on as SIGINT here.
  "$@" &
  pid=$!
  trap 'kill -INT "$pid"' TERM INT
  wait "$pid" || true
  trap - TERM INT
  wait "$pid"
  exit
fi
exec "$@"
EOF
  import "$work/postgres" postgres:15.3 \
    'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENV PGDATA=/var/lib/postgresql/data' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' \
    'EXPOSE 5432' \
    'CMD ["postgres"]'
}

standin_nats() {
  local work=$1
  rootfs_base "$work/nats"
  chroot_apt "$work/nats" nats-server wget
  slim "$work/nats"
  install -m 0755 /dev/stdin "$work/nats/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
# As the official image's: arguments that start with - go to nats-server.
set -e
if [ "${1#-}" != "$1" ]; then set -- nats-server "$@"; fi
exec "$@"
EOF
  import "$work/nats" nats:2.10-alpine \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'ENTRYPOINT ["docker-entrypoint.sh"]' \
    'EXPOSE 4222 8222 6222' \
    'CMD ["nats-server"]'
}
