package translate_test

import (
	"bytes"
	"errors"
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

// TestGolden translates each testdata/NAME.in.yaml with the
// translate.Options of testdata/NAME.options.yaml (when there is one; the
// defaults otherwise) and the mesh config of testdata/NAME.mesh.yaml (when
// there is one), and compares the outcome with NAME.out.yaml: the result
// (IR, Gateway verdict and conditions), or the error, with the verdict when
// the Gateway is not accepted. Regenerate with
//
//	go test ./internal/translate -run TestGolden -update
//
// and review the diff. Each input starts with a comment saying what the
// case shows.
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
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(data, []byte("# ")) {
				t.Errorf("%s does not start with a comment saying what the case shows", in)
			}
			opts := translate.Options{}
			optsFile := strings.TrimSuffix(in, ".in.yaml") + ".options.yaml"
			if b, err := os.ReadFile(optsFile); err == nil {
				if err := yaml.UnmarshalStrict(b, &opts); err != nil {
					t.Fatalf("%s: %v", optsFile, err)
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			src := files.Source{Paths: []string{in}}
			if mesh := strings.TrimSuffix(in, ".in.yaml") + ".mesh.yaml"; fileExists(mesh) {
				src.MeshConfig = mesh
			}
			snap, err := src.Load()
			if err != nil {
				t.Fatalf("loading %s: %v", in, err)
			}
			var got []byte
			res, err := translate.Translate(snap, opts)
			var na *translate.NotAcceptedError
			switch {
			case errors.As(err, &na):
				got, err = yaml.Marshal(struct {
					Error   string                   `json:"error"`
					Gateway translate.GatewayVerdict `json:"gateway"`
				}{na.Error(), na.Verdict})
			case err != nil:
				got, err = []byte("error: "+err.Error()+"\n"), nil
			default:
				got, err = yaml.Marshal(res)
			}
			if err != nil {
				t.Fatal(err)
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

// Every options file belongs to an input.
func TestGoldenOptionsHaveInputs(t *testing.T) {
	opts, err := filepath.Glob("testdata/*.options.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		in := strings.TrimSuffix(o, ".options.yaml") + ".in.yaml"
		if _, err := os.Stat(in); err != nil {
			t.Errorf("%s has no input %s", o, in)
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
