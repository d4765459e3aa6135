package httpwire

import (
	"errors"
	"net/http"
	"reflect"
	"testing"
)

func TestParseFields(t *testing.T) {
	h := http.Header{}
	if err := ParseFields("Content-Type: a\r\nx-lower:  b \r\nX-Lower: c\nHost:d\r\n\r\nignored: after the end\r\n", h, 10); err != nil {
		t.Fatal(err)
	}
	want := http.Header{"Content-Type": {"a"}, "X-Lower": {"b", "c"}, "Host": {"d"}}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("got %v, want %v", h, want)
	}
	for in, kind := range map[string]FieldErrorKind{
		" folded\r\n":              Folded,
		"no colon\r\n":             Malformed,
		"sp ace: v\r\n":            Malformed,
		"A: \x01\r\n":              BadValue,
		"A: \x7f\r\n":              BadValue,
		"A: 1\r\nB: 2\r\nC: 3\r\n": TooMany,
	} {
		var fe *FieldError
		if err := ParseFields(in, http.Header{}, 2); !errors.As(err, &fe) || fe.Kind != kind {
			t.Errorf("%q: %v, want kind %d", in, err, kind)
		}
	}
}

func TestTokensAndLists(t *testing.T) {
	if !HasToken([]string{"keep-alive, Upgrade"}, "upgrade") || HasToken([]string{"upgraded"}, "upgrade") {
		t.Error("HasToken")
	}
	if !IsCanonical("X-Request-Id") || IsCanonical("x-request-id") || IsCanonical("X-REQUEST-ID") {
		t.Error("IsCanonical")
	}
	if ValidToken("") || ValidToken("a b") || !ValidToken("M-SEARCH") {
		t.Error("ValidToken")
	}
}
