// Package procstat reads a process's CPU time and memory from /proc, summed
// over the process and its descendants (nginx's master and workers count as
// one proxy).
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ClockTick is the unit of utime and stime in /proc/<pid>/stat. Linux
// reports them in USER_HZ, which is 100 on every architecture Go supports.
const ClockTick = 10 * time.Millisecond

// Tree returns pid and all its descendants.
func Tree(pid int) []int {
	parents := map[int][]int{} // ppid -> children
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue
		}
		parents[st.ppid] = append(parents[st.ppid], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, parents[out[i]]...)
	}
	return out
}

type stat struct {
	ppid           int
	utime, stime   int64
	cutime, cstime int64 // of children that exited and were waited for
}

// readStat parses /proc/<pid>/stat. The command name (field 2) may contain
// spaces and parentheses, so fields are counted from the last ')'.
func readStat(pid int) (stat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return stat{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
	if len(f) < 15 {
		return stat{}, fmt.Errorf("malformed stat: %d fields", len(f))
	}
	var st stat
	var err error
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return stat{}, err
	}
	if st.utime, err = strconv.ParseInt(f[11], 10, 64); err != nil {
		return stat{}, err
	}
	if st.stime, err = strconv.ParseInt(f[12], 10, 64); err != nil {
		return stat{}, err
	}
	if st.cutime, err = strconv.ParseInt(f[13], 10, 64); err != nil {
		return stat{}, err
	}
	if st.cstime, err = strconv.ParseInt(f[14], 10, 64); err != nil {
		return stat{}, err
	}
	return st, nil
}

// CPU returns the user+system CPU time used so far by pid and its
// descendants, including descendants that have exited and been waited for.
func CPU(pid int) (time.Duration, error) {
	var ticks int64
	for i, p := range Tree(pid) {
		st, err := readStat(p)
		if err != nil {
			if i == 0 {
				return 0, err
			}
			continue // a child that just exited
		}
		ticks += st.utime + st.stime + st.cutime + st.cstime
	}
	return time.Duration(ticks) * ClockTick, nil
}

// Mem is resident memory in bytes.
type Mem struct {
	RSS  int64 // VmRSS: now
	Peak int64 // VmHWM: the high-water mark since the process started
}

// Memory returns VmRSS and VmHWM summed over pid and its descendants.
func Memory(pid int) (Mem, error) {
	var m Mem
	for i, p := range Tree(pid) {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p), "status"))
		if err != nil {
			if i == 0 {
				return Mem{}, err
			}
			continue
		}
		rss, hwm := parseStatus(b)
		m.RSS += rss
		m.Peak += hwm
	}
	return m, nil
}

func parseStatus(b []byte) (rss, hwm int64) {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v) // "1234 kB"
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if k == "VmRSS" {
			rss = n * 1024
		} else {
			hwm = n * 1024
		}
	}
	return rss, hwm
}

// MachineBusy returns the CPU time all processes of the machine have used
// (user, nice, system, irq, softirq, steal from /proc/stat).
func MachineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("malformed /proc/stat")
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * ClockTick, nil
}
