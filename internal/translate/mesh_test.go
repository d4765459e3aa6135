package translate_test

import (
	"slices"
	"testing"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source/files"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// The mesh config gives the trust domain, its aliases and the root
// namespace unless the options (flags given explicitly) set them; without
// a mesh config Istio's defaults apply.
func TestMeshConfigAndOverrides(t *testing.T) {
	snap, err := files.Load([]string{"testdata/meshconfig.in.yaml"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rootPolicy := func(res *translate.Result) bool {
		for _, p := range res.Waypoint.Services[0].Ports[0].Policies {
			if p.Name.Namespace == "mesh-root" {
				return true
			}
		}
		return false
	}
	res, err := translate.Translate(snap, translate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := res.Waypoint
	if w.TrustDomain != "cluster.local" || w.TrustDomainAliases != nil || w.PathNormalization != "" ||
		w.ExtAuthzProviders != nil || w.DefaultRetry != nil || rootPolicy(res) {
		t.Errorf("no mesh config: trust domain %q aliases %q normalization %q providers %v retry %v root policy %v; want Istio's defaults",
			w.TrustDomain, w.TrustDomainAliases, w.PathNormalization, w.ExtAuthzProviders, w.DefaultRetry, rootPolicy(res))
	}

	mc, err := meshconfig.Load("testdata/meshconfig.mesh.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withMesh := *snap
	withMesh.MeshConfig = mc
	res, err = translate.Translate(&withMesh, translate.Options{
		TrustDomain: "flag.example", TrustDomainAliases: []string{"alias.example"}, RootNamespace: "elsewhere"})
	if err != nil {
		t.Fatal(err)
	}
	w = res.Waypoint
	if w.TrustDomain != "flag.example" || !slices.Equal(w.TrustDomainAliases, []string{"alias.example"}) || rootPolicy(res) {
		t.Errorf("options set: trust domain %q aliases %q root policy %v; want the options' values", w.TrustDomain, w.TrustDomainAliases, rootPolicy(res))
	}
	if w.PathNormalization != "MERGE_SLASHES" || len(w.ExtAuthzProviders) != 4 {
		t.Errorf("options set: normalization %q, %d providers; the mesh config's other settings must stay", w.PathNormalization, len(w.ExtAuthzProviders))
	}
	// The translation copies the providers: the snapshot's stay as parsed.
	if mc.ExtAuthzProviders["http-authz"].Backend != "" {
		t.Errorf("the snapshot's mesh config was written: backend %q", mc.ExtAuthzProviders["http-authz"].Backend)
	}
}
