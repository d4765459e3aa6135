package deployer_test

import (
	"slices"
	"strings"
	"testing"

	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/deployer"
)

// The limits parameter sets the proxy's limit flags, checked as the proxy
// parses them, after the controller's own --proxy-arg arguments.
func TestLimitsParameter(t *testing.T) {
	p, err := deployer.ParseParameters(map[string]string{"limits": "max-connections: 20000\nconnect-timeout: 2.5s\nmax-header-bytes: \"32768\"\n"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"--connect-timeout=2.5s", "--max-connections=20000", "--max-header-bytes=32768"}
	if !slices.Equal(p.Limits, want) {
		t.Fatalf("limits %q, want %q", p.Limits, want)
	}
	gw := &gwv1.Gateway{}
	gw.Name, gw.Namespace = "wp", "ns"
	args := deployer.Desired(gw, p, deployer.Config{XDSAddress: "x:1", ExtraArgs: []string{"--max-connections=100"}}).Deployment.Spec.Template.Spec.Containers[0].Args
	if i, j := slices.Index(args, "--max-connections=100"), slices.Index(args, "--max-connections=20000"); i < 0 || j < i {
		t.Errorf("args %q: the Gateway's limit must come after the controller's", args)
	}

	for _, c := range []struct{ limits, want string }{
		{"inbound-address: 0.0.0.0:1", `inbound-address: not a limit`},
		{"max-connections: lots", `max-connections: "lots"`},
		{"connect-timeout: 5", `connect-timeout: "5"`},
		{"idle-timeout: -1s", "must not be negative"},
		{"max-headers: [1]", "want a number or a duration"},
		{"- max-headers", "want a mapping"},
	} {
		_, err := deployer.ParseParameters(map[string]string{"limits": c.limits})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("limits %q: error %v, want one saying %q", c.limits, err, c.want)
		}
	}
}
