package files

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls onChange whenever the manifests under paths change, until ctx
// ends. It listens for file system events (debounced by 100 ms, so an
// editor's write-rename-chmod burst is one change) and also compares a
// fingerprint of the files every second, so a missed event costs at most a
// second.
func Watch(ctx context.Context, paths []string, log *slog.Logger, onChange func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("file events unavailable; polling the manifests every second", "error", err.Error())
		w = nil
	} else {
		defer func() { _ = w.Close() }()
		for _, p := range paths {
			addWatches(w, p, log)
		}
	}
	last := fingerprint(paths)
	check := func() {
		fp := fingerprint(paths)
		if fp != last {
			last = fp
			onChange()
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var debounce *time.Timer
	var debounceC <-chan time.Time
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Has(fsnotify.Create) {
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
					addWatches(w, ev.Name, log)
				}
			}
			if debounce == nil {
				debounce = time.NewTimer(100 * time.Millisecond)
			} else {
				debounce.Reset(100 * time.Millisecond)
			}
			debounceC = debounce.C
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			log.Warn("file watch error", "error", err.Error())
		case <-debounceC:
			debounceC = nil
			check()
		case <-tick.C:
			check()
		}
	}
}

// addWatches watches a directory tree, or the directory holding a file (so
// that an editor replacing the file is seen).
func addWatches(w *fsnotify.Watcher, p string, log *slog.Logger) {
	st, err := os.Stat(p)
	if err != nil {
		return
	}
	if !st.IsDir() {
		if err := w.Add(filepath.Dir(p)); err != nil {
			log.Warn("cannot watch", "path", filepath.Dir(p), "error", err.Error())
		}
		return
	}
	_ = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if err := w.Add(path); err != nil {
				log.Warn("cannot watch", "path", path, "error", err.Error())
			}
		}
		return nil
	})
}

// fingerprint summarises the manifest files: names, sizes and modification
// times.
func fingerprint(paths []string) [32]byte {
	h := sha256.New()
	files, _ := listFiles(paths)
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(h, "%s missing\n", f)
			continue
		}
		fmt.Fprintf(h, "%s %d %d\n", f, st.Size(), st.ModTime().UnixNano())
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
