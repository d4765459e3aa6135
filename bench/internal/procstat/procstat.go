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

// Mem is resident memory in bytes, from /proc/PID/status.
type Mem struct {
	RSS  int64 // VmRSS: now
	Peak int64 // VmHWM: the high-water mark since the process started
	// RSS split by kind (RssAnon + RssFile + RssShmem = VmRSS): anonymous
	// memory (heap, stacks: what the process allocated), file-backed pages
	// (the mapped binary and libraries: shared with every process running
	// the same file) and shared memory.
	Anon, File, Shmem int64
}

// Memory returns the figures of Mem summed over pid and its descendants.
// Pages shared between them (nginx's workers and their master) count once
// per process, as VmRSS counts them.
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
		one, err := ParseStatus(b)
		if err != nil {
			if i == 0 {
				return Mem{}, fmt.Errorf("/proc/%d/status: %w", p, err)
			}
			continue // a child that exited while being read
		}
		m.RSS += one.RSS
		m.Peak += one.Peak
		m.Anon += one.Anon
		m.File += one.File
		m.Shmem += one.Shmem
	}
	return m, nil
}

// ParseStatus reads the memory lines of a /proc/PID/status file ("VmRSS:
// 1234 kB"). VmRSS is required (a status without it is not a live
// process's); the others are zero when absent (VmHWM, and the Rss* split,
// which Linux has reported since 4.5).
func ParseStatus(b []byte) (Mem, error) {
	var m Mem
	haveRSS := false
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst, haveRSS = &m.RSS, true
		case "VmHWM":
			dst = &m.Peak
		case "RssAnon":
			dst = &m.Anon
		case "RssFile":
			dst = &m.File
		case "RssShmem":
			dst = &m.Shmem
		default:
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return Mem{}, fmt.Errorf("%s: %q is not a size in kB", k, strings.TrimSpace(v))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return Mem{}, fmt.Errorf("%s: %q is not a size in kB", k, strings.TrimSpace(v))
		}
		*dst = n << 10
	}
	if !haveRSS {
		return Mem{}, fmt.Errorf("no VmRSS line (a kernel thread or a zombie)")
	}
	return m, nil
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
