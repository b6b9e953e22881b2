# nlpd container image. The default (last) stage, `runtime`, is debian:bookworm-slim with the
# `nlpd` binary, run as the unprivileged user nlpd (uid/gid 10001), serving on port 8080.
#
# Build it one of two ways:
#
#   1. From source, multi-stage (needs network: the rust image and crates.io):
#        docker build -t nlpd .
#      (podman 4.3 also needs --build-arg NLPD_BINARY_FROM=build: see the `binary` stage.)
#      .cargo/config.toml builds for x86-64-v3: the image needs an AVX2 CPU.
#   2. From an already-built binary, offline (never touches the rust image or crates.io):
#        cargo build --release --bin nlpd
#        docker build --target runtime --build-arg NLPD_BINARY_FROM=prebuilt -t nlpd .
#      NLPD_BINARY picks another binary inside the context (default target/release/nlpd; the
#      .dockerignore lets only that one file of target/ through). scripts/container-image.sh does
#      this with podman, from a staged context holding a stripped copy of any binary, and makes
#      a local debian:bookworm-slim base with debootstrap when no registry is reachable.
#
# The binary is dynamically linked against glibc (libc, libm) and libgcc_s only: build it on
# Debian bookworm (or an older glibc), as the `build` stage does. The slim base has both, so the
# runtime stage installs nothing (no apt, no network).
#
# Models are not in the image: mount a models dir (as made by `make models`) at /models,
# read-only. For a self-contained image, derive one (scripts/container-image.sh --models DIR
# does exactly this):
#   FROM nlpd
#   COPY models/ /models/
#
# Run (serves the models found in /models; `serve --model NAME=/models/DIR` picks some):
#   docker run -p 8080:8080 -v "$PWD/models:/models:ro" nlpd
# Every `nlpd serve` flag has an NLPD_* environment variable (docs/OPERATIONS.md).
#
# No HEALTHCHECK: the slim base has no HTTP client and nlpd has no self-probe command; the
# orchestrator probes GET /health/live and GET /health/ready (503 while loading or draining).

# Which stage provides /usr/local/bin/nlpd: `build` (compile from source) or `prebuilt`.
ARG NLPD_BINARY_FROM=build

# ---- build: compile from source ----------------------------------------------------------------
# NOT exercised by the project's tests: it needs the rust image and crates.io, which the test
# machine cannot reach. The tests build the `runtime` stage from a prebuilt binary instead.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin nlpd \
    && install -D -m 0755 target/release/nlpd /usr/local/bin/nlpd

# ---- prebuilt: a binary from the build context, no compiler --------------------------------------
FROM scratch AS prebuilt
# Marks this stage's intermediate images, which scripts/container-image.sh prunes after a build.
LABEL org.nlpd.stage=prebuilt
ARG NLPD_BINARY=target/release/nlpd
COPY ${NLPD_BINARY} /usr/local/bin/nlpd

# The stage chosen by NLPD_BINARY_FROM; builders skip the other one. podman 4.3 (buildah 1.28)
# decides which stages to skip from the --build-arg values only, not from the ARG default above:
# there, pass the choice explicitly (--build-arg NLPD_BINARY_FROM=build for a source build), or it
# stops with "build: image not known".
FROM ${NLPD_BINARY_FROM} AS binary

# ---- runtime -------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN groupadd --gid 10001 nlpd \
    && useradd --uid 10001 --gid nlpd --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin nlpd \
    && install -d -o nlpd -g nlpd -m 0750 /data \
    && install -d -m 0755 /models
COPY --from=binary /usr/local/bin/nlpd /usr/local/bin/nlpd

LABEL org.opencontainers.image.title="nlpd" \
      org.opencontainers.image.description="NLP inference server: embeddings, classification, NER, generation" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV NLPD_MODELS_DIR=/models \
    NLPD_DATA_DIR=/data \
    NLPD_HOST=0.0.0.0 \
    NLPD_PORT=8080

# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
# The default prediction store (SQLite) lives here; mount a volume to keep it.
VOLUME ["/data"]
EXPOSE 8080
# nlpd drains on SIGTERM: /health/ready turns 503, it keeps serving for --shutdown-delay (5s),
# finishes in-flight work within --shutdown-timeout (20s), flushes its store and exits 0. Docker's
# and podman's default stop timeout (10 s) is shorter than that: allow delay + timeout + 10 s
# (`docker run --stop-timeout 35`, `docker stop -t 35`, Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["nlpd"]
CMD ["serve"]
