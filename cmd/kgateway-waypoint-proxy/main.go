// Command kgateway-waypoint-proxy is the waypoint proxy alone: the data
// plane fed by the controller over xDS, with exactly the flags of
// `kgateway-waypoint proxy`. It links none of the control plane (no
// Kubernetes client or API types, no translator), so a waypoint pod maps
// and scans half the code of the full binary; the image ships both and the
// deployer runs this one.
package main

import (
	"fmt"
	"os"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxycmd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	g := &proxycmd.Logging{}
	root := proxycmd.New("kgateway-waypoint-proxy", g)
	root.Version = version
	root.SilenceUsage, root.SilenceErrors = true, true
	g.Bind(root.Flags())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
