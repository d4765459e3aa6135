package translate_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// FuzzLoadTranslateCompile feeds arbitrary manifests (seeded with every
// golden input, so the fuzzer mutates well-typed objects as well as
// garbage) through loading, translation and the proxy's compile step:
// each may refuse, none may panic, and whatever the translator produces
// must serialise and compile.
func FuzzLoadTranslateCompile(f *testing.F) {
	ins, _ := filepath.Glob("testdata/*.in.yaml")
	for _, in := range ins {
		data, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("apiVersion: v1\nkind: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := files.LoadBytes("fuzz.yaml", data)
		if err != nil {
			return
		}
		res, err := translate.Translate(snap, translate.Options{})
		if err != nil {
			return
		}
		if _, err := json.Marshal(res); err != nil {
			t.Fatalf("result does not serialise: %v", err)
		}
		p := proxy.New(proxy.Options{})
		defer p.Close()
		if err := p.Update(res.Waypoint); err != nil {
			t.Fatalf("the translator produced a config the proxy refuses: %v", err)
		}
	})
}
