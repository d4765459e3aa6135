package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/kgateway-dev/kgateway-waypoint/internal/standalone"
)

// runProfiledWaypoint is `kgateway-waypoint standalone` (the same package,
// the same wiring) with a CPU profile written when it is told to stop, so
// the proxy can be profiled without a profiling flag in the product.
func runProfiledWaypoint(args []string) error {
	var o standalone.Options
	var paths listFlag
	var profile string
	fs := flag.NewFlagSet("waypoint-profiled", flag.ContinueOnError)
	fs.Var(&paths, "f", "manifest file or directory (repeatable)")
	fs.StringVar(&o.DataPlane.InboundAddress, "inbound-address", "", "PROXY listener")
	fs.StringVar(&o.DataPlane.StatusAddress, "status-address", "", "status listener")
	o.DataPlane.MetricsAddress, o.DataPlane.AdminAddress = "off", "off"
	fs.StringVar(&profile, "cpu-profile", "", "write the CPU profile here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Paths = paths
	f, err := os.Create(profile)
	if err != nil {
		return err
	}
	r, err := standalone.Start(o)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err = <-r.Errors():
		err = fmt.Errorf("serving: %w", err)
	}
	pprof.StopCPUProfile()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
