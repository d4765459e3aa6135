package expr

import (
	"testing"

	"github.com/google/cel-go/interpreter"
)

func act(vars map[string]any) interpreter.Activation {
	a, err := interpreter.NewActivation(vars)
	if err != nil {
		panic(err)
	}
	return a
}

func TestFilters(t *testing.T) {
	vars := map[string]any{
		"request":    map[string]any{"host": "svc", "headers": map[string]string{"x": "y"}},
		"response":   map[string]any{"code": int64(503)},
		"connection": map[string]any{"mtls": true},
	}
	for src, want := range map[string]bool{
		"response.code >= 400":                                true,
		"response.code == 200":                                false,
		"request.headers['x'] == 'y'":                         true,
		"request.headers['missing'] == 'y'":                   false,
		"connection.mtls":                                     true,
		"!connection.mtls":                                    false,
		"response.code >= 500 && request.headers['x'] == 'y'": true,
		"response.code < 400 || !connection.mtls":             false,
	} {
		p, err := Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := p.Bool(act(vars)); got != want {
			t.Errorf("%s = %v, want %v", src, got, want)
		}
	}
}

func TestEvalString(t *testing.T) {
	vars := map[string]any{"request": map[string]any{"host": "svc.ns", "headers": map[string]string{"x": "y"}}, "response": map[string]any{"code": int64(200)}}
	for src, want := range map[string]string{"request.host": "svc.ns", "request.headers['x']": "y", "'fixed'": "fixed", "response.code": "200"} {
		p, err := Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := p.Eval(act(vars)); !ok || got != want {
			t.Errorf("%s = %q %v, want %q", src, got, ok, want)
		}
	}
}

func TestCompileRefuses(t *testing.T) {
	for _, src := range []string{"", "response.code >=", "request.nope == 'x'", "xds.cluster_name == 'a'", "filter_state['x'] == 'y'"} {
		if _, err := Compile(src); err == nil {
			t.Errorf("%q compiled", src)
		}
	}
}
