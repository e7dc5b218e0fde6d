# ZT Gateway image: the `gateway` daemon and the `peerctl` CLI on a minimal runtime.
#   docker build -t zt-gateway:0.1.0 .
# No shell or package manager at runtime; Kubernetes probes /healthz and /readyz, so the image
# declares no HEALTHCHECK.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p gateway -p peerctl \
 && install -D -m 0755 target/release/gateway /out/usr/local/bin/gateway \
 && install -D -m 0755 target/release/peerctl /out/usr/local/bin/peerctl

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="zt-gateway" \
      org.opencontainers.image.description="WireGuard cross-cluster gateway with keys in a KMS" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /
# The image's default user is unprivileged (65532, "nonroot"); the Deployment runs the gateway
# as uid 0 with every capability dropped but NET_ADMIN (see manifests/base/deployment.yaml).
USER 65532:65532
EXPOSE 51820/udp 8055/tcp
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["--config", "/etc/zt-gateway/gateway.toml"]
