//go:build linux

package load

import (
	"syscall"
	"time"
)

// prSetTimerSlack is PR_SET_TIMERSLACK from <linux/prctl.h>.
const prSetTimerSlack = 29

// sleepUntil blocks until t with a precision of tens of microseconds.
//
// Go's timers wake through the netpoller with millisecond granularity, which
// would add up to a millisecond of generator lag to every open-loop send. So
// the last stretch is a nanosleep on this thread with the thread's timer
// slack set to 1 ns (the default 50 µs slack would add that much again).
func sleepUntil(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	if d > 5*time.Millisecond {
		time.Sleep(d - 2*time.Millisecond)
		d = time.Until(t)
		if d <= 0 {
			return
		}
	}
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
