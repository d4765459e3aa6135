package logformat

import "testing"

func TestParse(t *testing.T) {
	segs, err := Parse(`[%START_TIME%] "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):5%" %RESPONSE_CODE% 100%%`)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 7 || segs[1].Op != "START_TIME" || segs[3].Op != "REQ" || segs[3].Arg != "x-envoy-original-path" ||
		segs[3].Alt != ":path" || segs[3].MaxLen != 5 || segs[6].Literal != " 100%" {
		t.Fatalf("%+v", segs)
	}
	for _, bad := range []string{"%NOPE%", "%REQ()%", "%START_TIME(%s)%", "%RESPONSE_CODE", "%BYTES_SENT:x%"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
