//go:build unix

package load

import (
	"net"
	"syscall"
)

// peerClosed peeks at c without blocking: end of stream or an error means
// the peer closed or reset it; "would block" means it is open and idle.
func peerClosed(c *net.TCPConn) (closed, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return true, true // already closed here
	}
	var b [1]byte
	cerr := rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			closed = false
		case err != nil:
			closed = true
		default:
			closed = n == 0 // n > 0: unexpected bytes, but open
		}
		return true
	})
	if cerr != nil {
		return true, true
	}
	return closed, true
}
