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
// Go's timers wake through the netpoller with millisecond granularity (and
// later still on a busy machine), which would add a millisecond or more of
// generator lag to open-loop sends. So the whole wait is a nanosleep on
// this thread, with the thread's timer slack set to 1 ns (the default 50 µs
// slack would add that much again). Each sleeping connection holds an OS
// thread, which is fine for the few dozen connections a run uses.
func sleepUntil(t time.Time) {
	d := time.Until(t)
	if d <= 0 {
		return
	}
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
