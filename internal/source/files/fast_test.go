package files

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/bench/meshgen"
)

// tricky documents: each must load exactly as on the general path, whether
// or not the fast path takes it.
var tricky = []string{
	// Quoted values, comments, CRLF, labels and annotations holding "name".
	"apiVersion: \"v1\"\nkind: 'Service'\n# a comment\nmetadata:\n  labels:\n    name: not-this\n  name: \"svc\"\n  namespace: ns\n  annotations:\n    a: |\n      name: nor-this\nspec:\n  clusterIP: 10.0.0.1\n  ports:\n  - port: 80\n",
	"apiVersion: v1\r\nkind: Service\r\nmetadata:\r\n  name: crlf\r\n  namespace: ns\r\nspec:\r\n  ports:\r\n  - port: 80\r\n",
	// A value with a comment, or that YAML reads as another type.
	"apiVersion: v1\nkind: Namespace # the kind\nmetadata:\n  name: commented\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: 1.0\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: true\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: null\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"12\"\n",
	// Keys twice (strict decoding refuses), or read differently.
	"apiVersion: v1\nkind: Namespace\nkind: Service\nmetadata:\n  name: twice\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\nmetadata:\n  name: y\n",
	// Indentation games and flow style.
	"apiVersion: v1\nkind: Namespace\nmetadata:\n    name: deep\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b,\n    c: d}\n  name: flow-in-block\n",
	"apiVersion: v1\nkind: Namespace\nmetadata: {name: flow}\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n\tname: tab\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n  namespace: not-allowed\n",
	// Sequences at the indentation of their key.
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  finalizers:\n  - name: not-this\n    x: y\n  name: indentless\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n- name: a-list\n",
	"apiVersion: v1\nkind: Service\nmetadata:\n  name: seq\n  namespace: ns\nspec:\n  ports:\n  - port: 80\n    name: http\n  - port: 81\n    name: tcp\n",
	// Errors the general path reports.
	"apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: ns\nspec:\n  portz: []\n",
	"apiVersion: v1\nkind: Service\nmetadata:\n  name: Bad_Name\n  namespace: ns\n",
	"apiVersion: v1\nkind: Service\nmetadata:\n  namespace: ns\n",
	"apiVersion: v9\nkind: Service\nmetadata:\n  name: s\n",
	"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: skipped\n  namespace: ns\n",
	"kind: Service\nmetadata:\n  name: s\n",
	"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: ns\nspec:\n  actoin: DENY\n",
	"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: ns\nspec:\n  action: DENY\n",
	"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: listed\n",
	"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: dup\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: dup\n",
	"---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: after-empty\n",
	"apiVersion: v1\nkind: [\n",
}

// The fast path must change nothing: every document loads to the same
// objects, and every error is reported the same, in the same order, as on
// the general path. The corpus is the repository's manifests, meshbench's
// mesh and the tricky documents above, one file and one directory.
func TestFastPathLoadsExactlyAsTheGeneralPath(t *testing.T) {
	dir := t.TempDir()
	var corpus []string
	for _, glob := range []string{"../../translate/testdata/*.in.yaml", "../../../examples/waypoint/*.yaml"} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		corpus = append(corpus, m...)
	}
	if len(corpus) < 5 {
		t.Fatalf("corpus too small: %v", corpus)
	}
	mesh := filepath.Join(dir, "mesh", "mesh.yaml")
	if err := os.MkdirAll(filepath.Dir(mesh), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mesh, meshgen.Generate(150), 0o644); err != nil {
		t.Fatal(err)
	}
	corpus = append(corpus, mesh)
	for i, doc := range tricky {
		corpus = append(corpus, writeFile(t, dir, fmt.Sprintf("tricky/%02d.yaml", i), doc))
	}
	corpus = append(corpus, filepath.Join(dir, "tricky")) // all of them at once: error order
	all := strings.Join(tricky, "\n---\n")
	corpus = append(corpus, writeFile(t, dir, "all/tricky.yaml", all))

	for _, path := range corpus {
		general := loadWith(t, path, true)
		fast := loadWith(t, path, false)
		if general != fast {
			t.Errorf("%s: the fast path loads\n%s\nthe general path\n%s", path, fast, general)
		}
	}
}

// loadWith loads path on the general path only, or with the fast path, and
// describes the outcome: the error, or every object as JSON.
func loadWith(t *testing.T, path string, general bool) string {
	t.Helper()
	defer func(v bool) { noFastPath = v }(noFastPath)
	noFastPath = general
	snap, err := Load([]string{path}, nil)
	if err != nil {
		var le *LoadError
		if !errors.As(err, &le) {
			return "error: " + err.Error()
		}
		var b strings.Builder
		for _, oe := range le.Errors {
			fmt.Fprintf(&b, "file %s | object %s | reason %s\n", oe.File, oe.Object, oe.Reason)
		}
		return b.String()
	}
	j, err := json.MarshalIndent(snap, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

// The fast path must actually be taken for the documents standalone users
// and meshbench write, or it saves nothing.
func TestFastPathTakesBlockStyleManifests(t *testing.T) {
	docs := splitDocuments("mesh.yaml", meshgen.Generate(20), nil)
	for _, d := range docs {
		if d.err != nil || decodeFast(d.raw) == nil {
			t.Fatalf("document %d not taken by the fast path:\n%s", d.doc, d.raw)
		}
	}
	for i, doc := range tricky[:2] {
		if decodeFast([]byte(doc)) == nil {
			t.Errorf("tricky document %d not taken by the fast path", i)
		}
	}
}
