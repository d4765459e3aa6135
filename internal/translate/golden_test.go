package translate_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

var update = flag.Bool("update", false, "rewrite the golden *.out.yaml files from the translator's output")

// TestGolden translates each testdata/*.in.yaml and compares the result
// (IR and conditions) with the matching *.out.yaml. A matching *.mesh.yaml
// is the case's mesh config. Regenerate with
// go test ./internal/translate -run TestGolden -update, then review the diff.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) == 0 {
		t.Fatal("no golden inputs found")
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			src := files.Source{Paths: []string{in}}
			if mesh := strings.TrimSuffix(in, ".in.yaml") + ".mesh.yaml"; fileExists(mesh) {
				src.MeshConfig = mesh
			}
			snap, err := src.Load()
			if err != nil {
				t.Fatalf("loading %s: %v", in, err)
			}
			var got []byte
			res, err := translate.Translate(snap, translate.Options{})
			if err != nil {
				got = []byte("error: " + err.Error() + "\n")
			} else {
				got, err = yaml.Marshal(res)
				if err != nil {
					t.Fatal(err)
				}
			}
			out := strings.TrimSuffix(in, ".in.yaml") + ".out.yaml"
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create it): %v", err)
			}
			if string(want) != string(got) {
				t.Errorf("translation of %s differs from %s (run with -update and review the diff):\n--- got\n%s", in, out, got)
			}
		})
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
