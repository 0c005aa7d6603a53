# The stackgen image the rendered manifests run (the router) and that renders stacks in CI.
# Build: docker build -t ghcr.io/stackgen/stackgen:0.1.0 .
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY stack ./stack
COPY benches ./benches
RUN cargo build --release --locked --bin stackgen && strip target/release/stackgen

# Minimal runtime: glibc and CA certificates only, no shell, running as an unprivileged user
# (65532, matching the router Deployment's securityContext).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/stackgen /usr/local/bin/stackgen
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/stackgen"]
CMD ["--help"]
