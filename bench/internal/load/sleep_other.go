//go:build !linux

package load

import "time"

// sleepUntil blocks until t (with the Go timer's precision).
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
