package meshconfig

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// unknownField walks a decoded JSON document against a message descriptor and
// returns the path of the first field the message does not have (in sorted
// key order), "" when every field is known. protojson rejects the same
// documents, but names only the field and a position in the intermediate
// JSON, not where the field sits in the YAML the user wrote.
//
// Like protojson, a key may be the field's JSON name or its proto name.
// Well-known types (google.protobuf.*) have their own JSON forms and are not
// entered; protojson checks them.
func unknownField(v any, md protoreflect.MessageDescriptor, path string) string {
	obj, ok := v.(map[string]any)
	if !ok || strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return ""
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByName(protoreflect.Name(k))
		}
		p := k
		if path != "" {
			p = path + "." + k
		}
		if fd == nil {
			return p
		}
		val := obj[k]
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				continue
			}
			m, _ := val.(map[string]any)
			mkeys := make([]string, 0, len(m))
			for mk := range m {
				mkeys = append(mkeys, mk)
			}
			sort.Strings(mkeys)
			for _, mk := range mkeys {
				if u := unknownField(m[mk], fd.MapValue().Message(), fmt.Sprintf("%s[%q]", p, mk)); u != "" {
					return u
				}
			}
		case fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind:
		case fd.IsList():
			list, _ := val.([]any)
			for i, e := range list {
				if u := unknownField(e, fd.Message(), fmt.Sprintf("%s[%d]", p, i)); u != "" {
					return u
				}
			}
		default:
			if u := unknownField(val, fd.Message(), p); u != "" {
				return u
			}
		}
	}
	return ""
}
