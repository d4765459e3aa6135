package targets

import (
	"fmt"
	"net/netip"
	"strings"
)

// The scenario every proxy is configured for: one service whose requests
// get the response header AddedHeader: AddedValue, whose callers are
// allowed by an ALLOW policy on their identity, and one backend endpoint.
const (
	Namespace   = "bench"
	ServiceName = "backend"
	ServicePort = 8080
	AddedHeader = "traversed-waypoint"
	AddedValue  = "bench-waypoint"
	ClientSA    = "client"
)

// ServiceVIP is the service's "cluster IP". It only travels in PROXY
// headers (the destination the client dialled); nothing is sent to it.
var ServiceVIP = netip.MustParseAddr("127.96.0.10")

// Identity is the client's SPIFFE identity, carried in TLV 0xD0.
func Identity() string { return "spiffe://cluster.local/ns/" + Namespace + "/sa/" + ClientSA }

// WaypointManifests is the waypoint's configuration as the user would
// write it: namespace enrolled in the waypoint, the Gateway, the service
// and its EndpointSlice, a GAMMA HTTPRoute adding a response header, and an
// ALLOW AuthorizationPolicy that matches the benchmark's client.
func WaypointManifests(backend netip.AddrPort) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
  labels:
    istio.io/dataplane-mode: ambient
    istio.io/use-waypoint: bench-waypoint
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: bench-waypoint
  namespace: %[1]s
spec:
  gatewayClassName: kgateway-waypoint
  listeners:
  - name: mesh
    protocol: istio.io/PROXY
    port: 15088
---
apiVersion: v1
kind: Service
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  clusterIP: %[3]s
  ports:
  - name: http
    port: %[4]d
    targetPort: %[5]d
  selector:
    app: %[2]s
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[2]s-1
  namespace: %[1]s
  labels:
    kubernetes.io/service-name: %[2]s
addressType: IPv4
ports:
- name: http
  port: %[5]d
  protocol: TCP
endpoints:
- addresses: ["%[6]s"]
  conditions:
    ready: true
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: %[2]s
    port: %[4]d
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - name: %[2]s
      port: %[4]d
    filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add:
        - name: %[7]s
          value: %[8]s
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-client
  namespace: %[1]s
spec:
  targetRefs:
  - group: ""
    kind: Service
    name: %[2]s
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/%[1]s/sa/%[9]s"]
    to:
    - operation:
        methods: ["GET"]
`, Namespace, ServiceName, ServiceVIP, ServicePort, backend.Port(), backend.Addr(), AddedHeader, AddedValue, ClientSA)
}

// HAProxyConfig does the same job in HAProxy: PROXY v2 accepted, HTTP mode,
// the same response header, keep-alive connections reused to the backend.
// HAProxy 2.6 (Debian 12) cannot read TLV 0xD0 (fc_pp_tlv is 2.9+), so its
// stand-in for the ALLOW policy is an ACL on the PROXY source address.
//
// maxconn bounds the client connections. HAProxy sizes its file descriptor
// table for two per connection (client and server) and by default refuses
// to start when it cannot raise RLIMIT_NOFILE that far; strictLimits false
// lets it start within the limit it has (with reused server connections it
// needs little more than one per client connection).
func HAProxyConfig(listen, h2c string, backend netip.AddrPort, maxconn int, strictLimits bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global\n    maxconn %d\n", maxconn)
	if !strictLimits {
		b.WriteString("    no strict-limits\n")
	}
	fmt.Fprintf(&b, `defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 60s
    timeout http-keep-alive 300s
    option http-keep-alive
frontend mesh
    bind %s accept-proxy
`, listen)
	if h2c != "" {
		fmt.Fprintf(&b, "    bind %s accept-proxy proto h2\n", h2c)
	}
	fmt.Fprintf(&b, `    http-request deny unless { src 127.0.0.0/8 }
    http-response add-header %s %s
    default_backend backend
backend backend
    http-reuse always
    server b1 %s
`, AddedHeader, AddedValue, backend)
	return b.String()
}

// NginxConfig does the same job in nginx: listen ... proxy_protocol, the
// same response header, keep-alive upstream connections. Its stand-in for
// the ALLOW policy is allow/deny on the PROXY source address. Keep-alive
// request limits are lifted so that nginx, like the others, never closes a
// client or upstream connection during a run.
//
// workerConnections is per worker and counts upstream connections too; the
// kernel does not spread connections evenly over the workers, so it must
// cover all of them.
func NginxConfig(dir, listen, h2c string, backend netip.AddrPort, workerConnections int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections %[4]d; }
http {
  access_log off;
  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  upstream backend {
    server %[2]s;
    keepalive 256;
    keepalive_requests 100000000;
  }
  server {
    listen %[3]s proxy_protocol;
`, dir, backend, listen, workerConnections)
	if h2c != "" {
		fmt.Fprintf(&b, "    listen %s http2 proxy_protocol;\n", h2c)
	}
	fmt.Fprintf(&b, `    set_real_ip_from 127.0.0.0/8;
    real_ip_header proxy_protocol;
    allow 127.0.0.0/8;
    deny all;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      add_header %s %s always;
    }
  }
}
`, AddedHeader, AddedValue)
	return b.String()
}

// CaddyConfig does the same job in Caddy (a Caddyfile): the proxy_protocol
// listener wrapper accepting PROXY v2 from any source address (as HAProxy's
// accept-proxy and nginx's proxy_protocol do), HTTP/1.1 and h2c on the one
// listener, reverse_proxy with keep-alive upstream connections and
// header_down adding the same response header. Caddy cannot read TLV 0xD0
// either, so its stand-in for the ALLOW policy is, as for the others, the
// PROXY source address: remote_ip matches the address the PROXY header gave
// (client_ip would be for X-Forwarded-For), and anything else gets 403.
// Admin API, automatic HTTPS and config persistence are off, so it binds
// nothing but listen and writes nothing outside dir.
func CaddyConfig(dir, listen string, backend netip.AddrPort) (string, error) {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return "", fmt.Errorf("caddy listen address: %w", err)
	}
	return fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	storage file_system %[1]s/data
	servers {
		listener_wrappers {
			proxy_protocol {
				timeout 5s
				allow 0.0.0.0/0 ::/0
			}
		}
		protocols h1 h2c
		timeouts {
			idle 5m
		}
	}
}

http://:%[3]d {
	bind %[2]s
	@outsider not remote_ip 127.0.0.0/8
	respond @outsider 403
	reverse_proxy %[4]s {
		header_down +%[5]s %[6]s
		transport http {
			keepalive 5m
			keepalive_idle_conns 256
			keepalive_idle_conns_per_host 256
		}
	}
}
`, dir, ap.Addr(), ap.Port(), backend, AddedHeader, AddedValue), nil
}
