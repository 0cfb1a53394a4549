# syntax=docker/dockerfile:1
# sluice container image: a static-ish Rust binary on distroless.
#   docker build -t sluice:0.1.0 .
# Layout (./dev image builds the same layout offline from Debian packages and
# smoke-tests it): /usr/local/bin/sluice, user and group 65532 (nonroot),
# /tmp, config expected at /etc/sluice/sluice.yaml (the Helm chart mounts it).

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

# ---- build ------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN} AS build
# rdkafka-sys compiles librdkafka from source: a C toolchain, make, and the
# headers of the libraries it links dynamically: zlib, OpenSSL (TLS,
# SCRAM), Cyrus SASL (Kerberos) and libcurl (OAUTHBEARER's OIDC flow).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config \
      zlib1g-dev libssl-dev libsasl2-dev libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sluice \
 && install -D -m 0755 target/release/sluice /out/usr/local/bin/sluice
# The shared libraries the binary links beyond what the runtime image ships
# (glibc, libgcc_s): derived from ldd, as ./dev image does (libz, libssl,
# libcrypto, libsasl2, libcurl and what they link).
RUN ldd /out/usr/local/bin/sluice \
  | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' \
  | grep -Ev '/(libc|libm|libgcc_s|libpthread|libdl|librt|ld-linux[^/]*)\.so' \
  | xargs -r -I{} cp --parents -L {} /out/ \
 && mkdir -p /out/etc/sluice

# ---- runtime ------------------------------------------------------------------
# distroless/cc: glibc, libgcc, ca-certificates, tzdata, /etc/passwd with
# nonroot (65532), /tmp; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="Ordered, exactly-once Kafka to PostgreSQL sink" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /out/ /
USER 65532:65532
# sluice serves /healthz, /readyz and /metrics here when http.listen says so.
EXPOSE 9187
ENTRYPOINT ["sluice"]
CMD ["run", "--config", "/etc/sluice/sluice.yaml"]
