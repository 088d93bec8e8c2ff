# starwal: built in a Rust image, run in a slim Debian image as a non-root user.
#
#   docker build -t starwal .
#   docker run --rm --env-file .env --stop-timeout 45 -p 50051:50051 -p 9187:9187 starwal
#   docker run --rm --env-file .env starwal check        # any other subcommand
#
# The default command is `run`: gRPC control and health on :50051 (STARWAL_CONTROL_ADDR),
# Prometheus metrics on :9187/metrics (STARWAL_METRICS_ADDR). `docker stop` waits only 10 s by
# default before SIGKILL; starwal's drain may take STARWAL_SHUTDOWN_TIMEOUT_S (30 s), hence
# `--stop-timeout 45` (nothing is lost on a kill — the next start resumes from the slot — but a
# clean drain confirms everything loaded). The image writes no files, so a read-only root
# filesystem works. BuildKit (the default builder since Docker 23) is needed for the cache mounts.
#
# Targets: the default (last) stage builds the binary in the `build` stage. `--target prebuilt`
# makes the same runtime image from a binary built elsewhere (a release pipeline, CI), given as
# the build context's file `starwal`; the `build` stage is then skipped:
#
#   mkdir ctx && cp target/release/starwal ctx/ && docker build --target prebuilt -f Dockerfile ctx
#
# Both add the binary to `runtime`, the one definition of the image apart from the binary.
# scripts/container-test.sh builds and runs this image in CI (podman; README "Container" says what
# that proves and what not).

# ---------------------------------------------------------------------------------------- build
FROM rust:1-slim-bookworm AS build
# What the build needs besides Rust, as in .ci/run: the slim image's gcc/libc6-dev, plus
# pkg-config + libssl-dev (openssl-sys) and zlib1g-dev (libz-sys). protoc is not needed (the
# protoc-bin-vendored crate ships it). No libcurl dev package on purpose: without one, curl-sys
# compiles libcurl and links it statically, so the runtime image needs only libssl3.
# Packages unpinned on purpose (hadolint DL3008): bookworm's point and security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin starwal \
 && install -D -m 0755 target/release/starwal /out/starwal \
 && strip /out/starwal

# -------------------------------------------------------------------------------------- runtime
# Everything the image is except the binary, which the two stages below add.
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to Postgres (sslrootcert=system) and HTTPS to StarRocks;
# libssl3: the statically linked libcurl uses the system OpenSSL. (zlib and glibc are in the base.)
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 starwal \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin starwal
USER 10001:10001
EXPOSE 50051 9187
# Docker's health = the agent streams (the control server answers and reports SERVING); it is
# unhealthy while setup fails and retries, and during a drain. Uses only the binary and the
# base image's sh/grep. Kubernetes ignores HEALTHCHECK: use its native gRPC probes on :50051
# (deploy/kubernetes/). If STARWAL_CONTROL_ADDR moves the port, set STARWAL_CONTROL_URL too
# (e.g. http://127.0.0.1:6000), which `starwal status` reads.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
  CMD ["/bin/sh", "-c", "/usr/local/bin/starwal status --json | grep -Eq '\"serving\": ?true'"]
ENTRYPOINT ["/usr/local/bin/starwal"]
CMD ["run"]

# ------------------------------------------------------------------------------------- prebuilt
FROM runtime AS prebuilt
COPY starwal /usr/local/bin/starwal
# Fails the build here, not at deploy time, if the binary needs a library this image lacks
# (runs as the image's user, 10001).
RUN ["/usr/local/bin/starwal", "--version"]

# -------------------------------------------------------------------------------------- default
FROM runtime
COPY --from=build /out/starwal /usr/local/bin/starwal
RUN ["/usr/local/bin/starwal", "--version"]
