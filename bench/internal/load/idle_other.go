//go:build !unix

package load

import "net"

// peerClosed cannot tell here.
func peerClosed(*net.TCPConn) (closed, ok bool) { return false, false }
