# The single kgateway-waypoint image: the controller (`kgateway-waypoint
# controller`) and the waypoint proxies it deploys (`kgateway-waypoint
# proxy`). Static binary on distroless, non-root (65532), no shell.
#
#   docker build -t ghcr.io/kgateway-dev/kgateway-waypoint:dev .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/kgateway-waypoint ./cmd/kgateway-waypoint

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kgateway-waypoint /kgateway-waypoint
USER 65532:65532
EXPOSE 15008 15088 15021 15020 15010
ENTRYPOINT ["/kgateway-waypoint"]
