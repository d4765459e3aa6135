package proxycmd

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// Logging is the --log-level and --log-format pair every command of both
// binaries takes, and the live level the admin's /logging changes.
type Logging struct {
	LogLevel  string
	LogFormat string
	Level     slog.LevelVar
}

// Bind adds the flags to f.
func (l *Logging) Bind(f *pflag.FlagSet) {
	f.StringVar(&l.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&l.LogFormat, "log-format", "text", "log format: text or json")
}

// Logger is the logger the flags ask for, writing to w.
func (l *Logging) Logger(w *os.File) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.LogLevel)
	}
	l.Level.Set(lvl)
	opts := &slog.HandlerOptions{Level: &l.Level}
	switch strings.ToLower(l.LogFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.LogFormat)
}
