# The single kgateway-waypoint image: the controller (`kgateway-waypoint
# controller`) and the waypoint proxies it deploys (`/kgateway-waypoint-proxy`,
# the data-plane-only build of `kgateway-waypoint proxy`, which links none of
# the control plane). Static binaries on distroless, non-root (65532), no shell.
#
#   docker build -t ghcr.io/kgateway-dev/kgateway-waypoint:dev .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ ./cmd/kgateway-waypoint ./cmd/kgateway-waypoint-proxy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kgateway-waypoint /kgateway-waypoint
COPY --from=build /out/kgateway-waypoint-proxy /kgateway-waypoint-proxy
USER 65532:65532
EXPOSE 15008 15088 15021 15020 15010
ENTRYPOINT ["/kgateway-waypoint"]
