# starwal: build in a full Rust image, run in a slim one as a non-root user.
# docker build -t starwal . && docker run --rm --env-file .env starwal tail
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin starwal \
 && strip target/release/starwal

FROM debian:bookworm-slim
# libssl3: libcurl (linked statically) uses the system OpenSSL for HTTPS to StarRocks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin starwal
COPY --from=build /src/target/release/starwal /usr/local/bin/starwal
USER 10001
ENTRYPOINT ["/usr/local/bin/starwal"]
CMD ["--help"]
