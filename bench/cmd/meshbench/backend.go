package main

import (
	"flag"
	"net"

	"github.com/kgateway-dev/kgateway-waypoint/bench/internal/targets"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return "" }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// runBackend serves the 1 KB backend on every --listen address (fast
// HTTP/1.1) and on --h2c-listen (net/http, HTTP/1.1 and h2c) until killed.
func runBackend(args []string) error {
	var listen listFlag
	var h2c string
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	fs.Var(&listen, "listen", "HTTP/1.1 address (repeatable)")
	fs.StringVar(&h2c, "h2c-listen", "", "HTTP/1.1 + h2c address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	errc := make(chan error, len(listen)+1)
	for _, a := range listen {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go func() { errc <- targets.ServeBackend(ln) }()
	}
	if h2c != "" {
		ln, err := net.Listen("tcp", h2c)
		if err != nil {
			return err
		}
		go func() { errc <- targets.ServeBackendH2C(ln) }()
	}
	return <-errc
}

// runZtunnelStandIn serves the destination ztunnel's stand-in of the
// native-HBONE rows (targets.ZtunnelStandIn) until killed.
func runZtunnelStandIn(args []string) error {
	fs := flag.NewFlagSet("ztunnel-standin", flag.ContinueOnError)
	h := fs.String("hbone-listen", "", "mTLS HBONE address (the waypoint's tunnels)")
	t := fs.String("tls-listen", "", "TLS address (HAProxy's upstream connections)")
	dir := fs.String("cert-dir", "", "cert-chain.pem, key.pem, root-cert.pem")
	be := fs.String("backend", "", "the backend (host:port)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return targets.RunZtunnelStandIn(*h, *t, *dir, *be)
}
