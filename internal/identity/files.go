package identity

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// The file names of a certificate directory, as Istio's agent writes them
// (and as a Kubernetes Secret mounted as files would hold them).
const (
	CertChainFile = "cert-chain.pem"
	KeyFile       = "key.pem"
	RootCertFile  = "root-cert.pem"
)

// Files is a Provider reading cert-chain.pem, key.pem and root-cert.pem
// from a directory. Run reloads them when they change (file events, and a
// check every second for a missed one); a set that does not load (half
// written, a key that does not match) is reported and the last good
// bundle stays in force.
type Files struct {
	Notifier
	dir string
	log *slog.Logger

	mu   sync.Mutex
	b    *Bundle
	last [3][]byte // the bytes the bundle in force was built from
	err  error
}

// NewFiles loads the directory once; it fails when the files do not load.
func NewFiles(dir string, log *slog.Logger) (*Files, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Files{dir: dir, log: log}
	if _, err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Current implements Provider.
func (f *Files) Current() *Bundle {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.b
}

// Err is the last reload's error (nil when it loaded or nothing changed).
func (f *Files) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Reload reads the files again and puts them in force when they changed
// and load; it reports whether the bundle changed.
func (f *Files) Reload() (bool, error) {
	var raw [3][]byte
	for i, name := range []string{CertChainFile, KeyFile, RootCertFile} {
		b, err := os.ReadFile(filepath.Join(f.dir, name))
		if err != nil {
			return f.failed(fmt.Errorf("certificate directory %s: %w", f.dir, err))
		}
		raw[i] = b
	}
	f.mu.Lock()
	same := f.b != nil && bytes.Equal(raw[0], f.last[0]) && bytes.Equal(raw[1], f.last[1]) && bytes.Equal(raw[2], f.last[2])
	f.mu.Unlock()
	if same {
		return false, nil
	}
	b, err := NewBundle(raw[0], raw[1], raw[2])
	if err != nil {
		return f.failed(fmt.Errorf("certificate directory %s: %w", f.dir, err))
	}
	f.mu.Lock()
	f.b, f.last, f.err = b, raw, nil
	f.mu.Unlock()
	f.Notify()
	f.log.Info("certificate loaded", "dir", f.dir, "identity", b.ID.String(), "notAfter", b.NotAfter().UTC().Format(time.RFC3339))
	return true, nil
}

func (f *Files) failed(err error) (bool, error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
	return false, err
}

// Run watches the directory until ctx ends, reloading on change.
func (f *Files) Run(ctx context.Context) {
	var events <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err == nil {
		defer func() { _ = w.Close() }()
		if err := w.Add(f.dir); err == nil {
			events = w.Events
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var debounce <-chan time.Time
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// A Secret volume swaps a symlink; an editor writes in steps:
			// wait for the burst to end.
			debounce = time.After(100 * time.Millisecond)
			continue
		case <-debounce:
		case <-tick.C:
		}
		_, err := f.Reload()
		switch {
		case err != nil && err.Error() != lastErr:
			lastErr = err.Error()
			f.log.Warn("certificate reload failed; keeping the certificate in force", "error", lastErr)
		case err == nil:
			lastErr = ""
		}
	}
}
