# Weir's image: the `weir` gateway and the `weir-echo` example backend.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p weir -p weir-echo

FROM debian:bookworm-slim
COPY --from=build /src/target/release/weir /src/target/release/weir-echo /usr/local/bin/
COPY examples/quickstart /etc/weir/quickstart
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["--config", "/etc/weir/quickstart", "--listen", "0.0.0.0:8080", "--admin", "0.0.0.0:9901"]
