# The service's image: `server` (the default command), `producer` and the
# dead-letter tool `order-cache-dlq`, built by scripts/build-release, the
# script that CI runs too. CI builds this file as it is on a Docker engine
# of its own (scripts/check-docker --engine, docs/docker.md); without an
# engine, scripts/check-docker replays the build stage (every COPY, every
# RUN) and checks what the run stage copies out of it. Keep the build stage
# to COPY and `RUN scripts/...` lines so that the replay stays exact.

FROM rust:1.89.0-bookworm AS build
WORKDIR /app
# Dependencies in a layer of their own, rebuilt only when Cargo.toml or
# Cargo.lock change: an edit of the sources recompiles only this crate.
COPY Cargo.toml Cargo.lock ./
COPY scripts/build-release scripts/
RUN scripts/build-release --deps-only
# What the build reads: the targets, the page and the OpenAPI document
# (include_str!) and the migrations (embed_migrations!).
COPY src src
COPY examples examples
COPY benches benches
COPY migrations migrations
COPY static static
COPY openapi.yaml ./
RUN scripts/build-release

# Same Debian release as the build image, so the binaries find the glibc
# they were linked against.
FROM debian:bookworm-slim
# ca-certificates: for NATS over TLS. busybox-static: its wget is the health
# check (1 MB, where curl brings a dozen libraries). Unpinned on purpose:
# Debian's security updates replace the versions a pin would name.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates busybox-static \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 order-cache \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin order-cache
COPY --from=build /app/target/release/examples/server /app/target/release/examples/producer /app/target/release/order-cache-dlq /usr/local/bin/
# A numeric user, so Kubernetes' runAsNonRoot can tell it is not root.
USER 10001:10001
# Inside the container the server must listen beyond loopback; publish the
# port on the host's loopback (docker-compose.yml) unless it should be public.
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
# Ready means the cache is restored and PostgreSQL and NATS answer. The port
# follows LISTEN_ADDR. Only the server has an HTTP port: run the producer and
# the tool with --no-healthcheck (docker-compose.yml does for the producer).
# No `wget -T`: Debian 12's static busybox crashes with it; --timeout ends a
# probe that hangs.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD ["/bin/sh", "-c", "busybox wget -q -O /dev/null \"http://127.0.0.1:${LISTEN_ADDR##*:}/readyz\""]
CMD ["server"]
