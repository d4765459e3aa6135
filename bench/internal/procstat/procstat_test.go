package procstat

import (
	"os"
	"testing"
)

func TestParseStatWithAWeirdName(t *testing.T) {
	line := "4242 (nginx: (worker) x) S 4241 4241 4241 0 -1 4194624 300 0 0 0 1234 567 0 0 20 0 1 0 100 10000 200\n"
	st, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 4241 || st.utime != 1234 || st.stime != 567 || st.cutime != 0 || st.cstime != 0 {
		t.Fatalf("got %+v", st)
	}
}

func TestParseStatus(t *testing.T) {
	rss, hwm := parseStatus([]byte("Name:\tx\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n"))
	if rss != 10<<20 || hwm != 20<<20 {
		t.Fatalf("rss %d hwm %d", rss, hwm)
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := CPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	m, err := Memory(os.Getpid())
	if err != nil || m.RSS <= 0 || m.Peak < m.RSS {
		t.Fatalf("memory %+v, %v", m, err)
	}
}
