# liveness-batch container image: build with the Rust toolchain, run from a slim image with CA
# certificates only, as a non-root user. The binary handles SIGTERM itself (a pod's or Batch
# job's termination grace): it stops sending, lets requests in flight finish, writes its
# journal and outputs, and exits 143; rerunning the same command resumes.
#
#   docker build -t liveness-batch .
#   (or deploy/container/Containerfile: the same runtime image around a binary built on the host)
#   docker run --rm -e DIDIT_API_KEY -v "$PWD/selfies:/data:ro" -v "$PWD/out:/results" \
#     liveness-batch liveness-batch scan /data --out /results

FROM rust:1.95-slim-bookworm AS build
# cmake for the TLS library's C build (aws-lc); the image has the C compiler already.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --profile dist --features jemalloc --locked --bin liveness-batch \
 && strip target/dist/liveness-batch

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin liveness \
 && mkdir -p /results && chown 10001:10001 /results
COPY --from=build /src/target/dist/liveness-batch /usr/local/bin/liveness-batch
USER 10001:10001
WORKDIR /results
# No ENTRYPOINT: engines give the whole command (Kubernetes `command`, AWS Batch `command`,
# which may be `sh -c "exec liveness-batch ..."` to name the out folder after the array
# index). Exec form, or `exec` in a shell: the binary is PID 1 and receives SIGTERM directly.
CMD ["liveness-batch", "--help"]
