// Package admin serves the waypoint's status endpoints: readiness on the
// status port (15021) and, in standalone mode, the computed object status.
package admin

import (
	"encoding/json"
	"net/http"
)

// Readiness says whether the waypoint can take traffic.
type Readiness interface {
	Ready() bool
}

// ReadyFunc adapts a function to Readiness.
type ReadyFunc func() bool

// Ready implements Readiness.
func (f ReadyFunc) Ready() bool { return f() }

// StatusHandler serves GET /healthz/ready: 200 when ready, 503 before; and
// GET /debug/status with the JSON from debug (when debug is non-nil).
func StatusHandler(ready Readiness, debug func() any) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if !ready.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if debug != nil {
		mux.HandleFunc("GET /debug/status", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(debug())
		})
	}
	return mux
}
