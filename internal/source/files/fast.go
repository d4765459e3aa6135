package files

import (
	"bytes"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The general path (loadDocument) parses every document twice: once,
// leniently, for its apiVersion, kind and name, then strictly into its API
// type (three times for Istio kinds). At 10,000 services that was 3.5 s of
// YAML. decodeFast reads the head from the text instead (scanHead), decodes
// the document once, strictly, and then checks the head against what the
// decoder found: the document is taken only when they agree. Anything else
// (a head the scan is unsure of, a kind or version the waypoint does not
// take, a List, a decoding error) returns nil and the document takes the
// general path, which then gives exactly the errors and logs it always did.

// noFastPath sends every document down the general path (tests compare).
var noFastPath = false

// decoded is a document decoded by decodeFast.
type decoded struct {
	kind string
	obj  any
	meta *metav1.ObjectMeta
}

// decodeFast decodes a document of a kind the waypoint takes, or returns
// nil. It only reads shared state, so documents are decoded in parallel.
func decodeFast(raw []byte) *decoded {
	h, ok := scanHead(raw)
	if !ok || h.name == "" {
		return nil
	}
	gv, err := parseGroupVersion(h.apiVersion)
	if err != nil {
		return nil
	}
	versions, known := kinds[kindKey{gv.group, h.kind}]
	if !known || !contains(versions, gv.version) {
		return nil
	}
	obj, meta, err := decode(h.kind, raw)
	if err != nil {
		return nil
	}
	o, ok := obj.(interface{ GetObjectKind() schema.ObjectKind })
	if !ok {
		return nil
	}
	tm, ok := o.GetObjectKind().(*metav1.TypeMeta)
	if !ok || tm.APIVersion != h.apiVersion || tm.Kind != h.kind || meta.Name != h.name || meta.Namespace != h.namespace {
		return nil // the scan misread the document
	}
	return &decoded{kind: h.kind, obj: obj, meta: meta}
}

// head is what scanHead read.
type head struct {
	apiVersion, kind, name, namespace string
}

// scanHead reads apiVersion, kind and metadata's name and namespace from a
// document written in the usual block style:
//
//	apiVersion: v1
//	kind: Service
//	metadata:
//	  name: svc
//	  namespace: ns
//
// with plain or simply quoted values and any other content. ok is false
// whenever the document does not look like that (flow style, a value with
// unusual characters or a comment, a key given twice, tabs, items, ...).
// It may still misread a document that does: decodeFast checks.
func scanHead(raw []byte) (h head, ok bool) {
	var haveAPI, haveKind, haveMeta, haveName, haveNS bool
	inMeta, metaIndent := false, -1
	for len(raw) > 0 {
		var line []byte
		line, raw, _ = bytes.Cut(raw, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		indent := 0
		for indent < len(line) && line[indent] == ' ' {
			indent++
		}
		rest := line[indent:]
		if len(rest) == 0 || rest[0] == '#' {
			continue // blank or comment
		}
		if rest[0] == '\t' {
			return h, false
		}
		// "- " at the indentation of a key: an item of that key's sequence.
		item := rest[0] == '-' && (len(rest) == 1 || rest[1] == ' ')
		if indent == 0 {
			if item {
				if inMeta {
					return h, false // metadata is a mapping
				}
				continue
			}
			inMeta = false
			key, val, ok := splitKey(rest)
			if !ok {
				return h, false
			}
			switch key {
			case "apiVersion":
				if haveAPI {
					return h, false
				}
				if h.apiVersion, ok = scalar(val); !ok {
					return h, false
				}
				haveAPI = true
			case "kind":
				if haveKind {
					return h, false
				}
				if h.kind, ok = scalar(val); !ok {
					return h, false
				}
				haveKind = true
			case "metadata":
				if haveMeta || len(bytes.TrimSpace(val)) > 0 {
					return h, false // twice, or flow style
				}
				haveMeta, inMeta = true, true
			case "items":
				return h, false // a List
			}
			continue
		}
		if !inMeta {
			continue // inside spec, status, ...
		}
		if metaIndent < 0 {
			metaIndent = indent
		}
		if indent < metaIndent {
			return h, false
		}
		if indent > metaIndent || item {
			continue // inside labels, annotations, finalizers, ...
		}
		key, val, ok := splitKey(rest)
		if !ok {
			return h, false
		}
		switch key {
		case "name":
			if haveName {
				return h, false
			}
			if h.name, ok = scalar(val); !ok {
				return h, false
			}
			haveName = true
		case "namespace":
			if haveNS {
				return h, false
			}
			if h.namespace, ok = scalar(val); !ok {
				return h, false
			}
			haveNS = true
		}
	}
	return h, haveAPI && haveKind && haveMeta
}

// splitKey splits "key: value" (or "key:") with a plain key of letters,
// digits, '-', '_' or '.'.
func splitKey(line []byte) (key string, val []byte, ok bool) {
	i := 0
	for i < len(line) && isKeyByte(line[i]) {
		i++
	}
	if i == 0 || i == len(line) || line[i] != ':' {
		return "", nil, false
	}
	if i+1 < len(line) && line[i+1] != ' ' {
		return "", nil, false
	}
	return string(line[:i]), line[i+1:], true
}

func isKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// scalar reads a value made only of letters, digits and . / - _ , plain or
// in single or double quotes.
func scalar(val []byte) (string, bool) {
	v := bytes.Trim(val, " ")
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	if len(v) == 0 {
		return "", false
	}
	for _, c := range v {
		if !isKeyByte(c) && c != '/' {
			return "", false
		}
	}
	return string(v), true
}
