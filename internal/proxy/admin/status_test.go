package admin

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestReadiness(t *testing.T) {
	var ready atomic.Bool
	h := StatusHandler(ReadyFunc(ready.Load), func() any { return map[string]int{"version": 3} })
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	if code := get("/healthz/ready").Code; code != http.StatusServiceUnavailable {
		t.Fatalf("before config: %d, want 503", code)
	}
	ready.Store(true)
	if code := get("/healthz/ready").Code; code != http.StatusOK {
		t.Fatalf("after config: %d, want 200", code)
	}
	rec := get("/debug/status")
	if rec.Code != 200 || rec.Body.String() != "{\n  \"version\": 3\n}\n" {
		t.Fatalf("debug status %d %q", rec.Code, rec.Body.String())
	}
	if code := get("/nope").Code; code != http.StatusNotFound {
		t.Fatalf("unknown path: %d", code)
	}
}
