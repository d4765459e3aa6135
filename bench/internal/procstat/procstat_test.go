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

// A real status file's memory lines (Linux 6.x), with the lines around them.
const status = `Name:	haproxy
Umask:	0022
State:	S (sleeping)
VmPeak:	  102400 kB
VmSize:	  102392 kB
VmLck:	       0 kB
VmHWM:	   20480 kB
VmRSS:	   15364 kB
RssAnon:	    9216 kB
RssFile:	    6144 kB
RssShmem:	       4 kB
VmData:	   12000 kB
Threads:	2
`

func TestParseStatus(t *testing.T) {
	m, err := ParseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	want := Mem{RSS: 15364 << 10, Peak: 20 << 20, Anon: 9 << 20, File: 6 << 20, Shmem: 4 << 10}
	if m != want {
		t.Fatalf("got %+v, want %+v", m, want)
	}
	if m.Anon+m.File+m.Shmem != m.RSS {
		t.Fatalf("RssAnon+RssFile+RssShmem = %d, VmRSS = %d", m.Anon+m.File+m.Shmem, m.RSS)
	}
}

func TestParseStatusErrors(t *testing.T) {
	for name, in := range map[string]string{
		"kernel thread (no Vm lines)": "Name:\tkthreadd\nState:\tS (sleeping)\n",
		"not a number":                "VmRSS:\t  12x4 kB\n",
		"not kB":                      "VmRSS:\t  1234 MB\n",
		"negative":                    "VmRSS:\t  -1 kB\n",
		"bad RssAnon":                 "VmRSS:\t  1 kB\nRssAnon:\t\n",
	} {
		if m, err := ParseStatus([]byte(in)); err == nil {
			t.Errorf("%s: parsed as %+v, want an error", name, m)
		}
	}
	// An old kernel without the Rss* split: VmRSS alone is enough.
	m, err := ParseStatus([]byte("VmHWM:\t 8 kB\nVmRSS:\t 4 kB\n"))
	if err != nil || m != (Mem{RSS: 4 << 10, Peak: 8 << 10}) {
		t.Fatalf("got %+v, %v", m, err)
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
	if err != nil || m.RSS <= 0 || m.Peak < m.RSS || m.Anon <= 0 || m.File <= 0 {
		t.Fatalf("memory %+v, %v", m, err)
	}
	if m.Anon+m.File+m.Shmem != m.RSS {
		t.Fatalf("RssAnon+RssFile+RssShmem = %d, VmRSS = %d (read from one status file, they add up)", m.Anon+m.File+m.Shmem, m.RSS)
	}
}
