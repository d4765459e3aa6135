package main

import (
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxycmd"
)

func TestCIDRListFlag(t *testing.T) {
	cmd := newStandalone(&globalFlags{})
	if err := cmd.Flags().Parse([]string{
		"--proxy-protocol-allowed-cidrs", "127.0.0.0/8, ::1",
		"--proxy-protocol-allowed-cidrs=10.1.2.3/16",
	}); err != nil {
		t.Fatal(err)
	}
	f := cmd.Flags().Lookup("proxy-protocol-allowed-cidrs")
	if f == nil {
		t.Fatal("standalone has no --proxy-protocol-allowed-cidrs")
	}
	if v := f.Value.String(); v != "127.0.0.0/8,::1/128,10.1.0.0/16" {
		t.Errorf("parsed %q", v)
	}
	if err := cmd.Flags().Set("proxy-protocol-allowed-cidrs", "10.0.0.0/8,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("bad entry: error %v", err)
	}
	if err := cmd.Flags().Set("proxy-protocol-allowed-cidrs", "fe80::1%eth0"); err == nil {
		t.Error("an address with a zone was accepted as a range")
	}
	if p := proxycmd.New("proxy", &globalFlags{}).Flags().Lookup("proxy-protocol-allowed-cidrs"); p == nil || p.Usage != f.Usage {
		t.Error("proxy must have the same --proxy-protocol-allowed-cidrs as standalone")
	}
}
