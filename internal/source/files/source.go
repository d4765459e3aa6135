package files

import (
	"context"
	"log/slog"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
)

// Source is the standalone mode's source: manifest files and directories,
// and Istio's mesh config from a file of its own (what istiod reads with
// --meshConfig; a ConfigMap holding it under data.mesh is accepted too).
type Source struct {
	// Paths are manifest files or directories.
	Paths []string
	// MeshConfig is the mesh config file; empty: Istio's defaults.
	MeshConfig string
	Logger     *slog.Logger
}

// Load reads the manifests and the mesh config into one Snapshot. A bad
// manifest fails it with a *LoadError; a bad mesh config with an error
// naming the file and the field.
func (s Source) Load() (*source.Snapshot, error) {
	snap, err := Load(s.Paths, s.Logger)
	if err != nil {
		return nil, err
	}
	if s.MeshConfig != "" {
		if snap.MeshConfig, err = meshconfig.Load(s.MeshConfig); err != nil {
			return nil, err
		}
	}
	return snap, nil
}

// Watch calls onChange whenever a manifest or the mesh config changes, until
// ctx ends (see the package's Watch).
func (s Source) Watch(ctx context.Context, onChange func()) error {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	paths := s.Paths
	if s.MeshConfig != "" {
		paths = append(append([]string(nil), s.Paths...), s.MeshConfig)
	}
	return Watch(ctx, paths, log, onChange)
}
