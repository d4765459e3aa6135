// Package expr compiles the CEL expressions of Istio's Telemetry API
// (accessLogging[].filter.expression, metrics tagOverrides values) over
// Envoy's attribute vocabulary (request.*, response.*, connection.*,
// source.*, destination.*, upstream.*), with github.com/google/cel-go.
// Expressions are parsed and type-checked once, when a configuration is
// compiled (the translator checks them too, to report a bad one on its
// Telemetry); a request only evaluates the compiled program.
package expr

import (
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// Roots are the attribute roots an expression may name, as Envoy's.
var Roots = []string{"request", "response", "connection", "source", "destination", "upstream"}

// Attributes the waypoint provides under each root. An expression naming
// another (or one Envoy has that the waypoint does not fill) is refused
// when compiled, so that it is reported rather than always false.
var Attributes = map[string][]string{
	"request":     {"path", "url_path", "host", "scheme", "method", "headers", "useragent", "referer", "id", "protocol", "duration", "size", "total_size", "time"},
	"response":    {"code", "code_details", "flags", "grpc_status", "headers", "size", "total_size"},
	"connection":  {"mtls", "requested_server_name", "termination_details"},
	"source":      {"address", "port", "principal", "namespace", "workload"},
	"destination": {"address", "port", "service_name", "service_namespace", "service_host"},
	"upstream":    {"address", "port", "cluster_name"},
}

var env = func() *cel.Env {
	var opts []cel.EnvOption
	for _, r := range Roots {
		opts = append(opts, cel.Variable(r, cel.MapType(cel.StringType, cel.DynType)))
	}
	e, err := cel.NewEnv(opts...)
	if err != nil {
		panic(err)
	}
	return e
}()

// Program is one compiled expression.
type Program struct {
	src string
	prg cel.Program
}

// String is the expression as written.
func (p *Program) String() string { return p.src }

// Compile parses and checks src. Every attribute it selects must be one of
// Attributes (request.headers['x'] and response.headers['x'] index a map).
func Compile(src string) (*Program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, fmt.Errorf("empty expression")
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		msg, _, _ := strings.Cut(iss.Err().Error(), "\n")
		return nil, fmt.Errorf("CEL expression %q: %s", src, strings.TrimPrefix(msg, "ERROR: <input>:"))
	}
	if err := checkAttributes(src); err != nil {
		return nil, err
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fmt.Errorf("CEL expression %q: %w", src, err)
	}
	return &Program{src: src, prg: prg}, nil
}

// checkAttributes finds root.field selections in src and refuses fields
// the waypoint does not provide. It is a lexical check (identifiers outside
// string literals), enough for Istio's attribute expressions.
func checkAttributes(src string) error {
	for i := 0; i < len(src); i++ {
		c := src[i]
		if c == '\'' || c == '"' { // skip a string literal
			q := c
			for i++; i < len(src) && src[i] != q; i++ {
				if src[i] == '\\' {
					i++
				}
			}
			continue
		}
		if !isIdentStart(c) || (i > 0 && (isIdent(src[i-1]) || src[i-1] == '.')) {
			continue
		}
		j := i
		for j < len(src) && isIdent(src[j]) {
			j++
		}
		word := src[i:j]
		fields, root := Attributes[word]
		if root && j < len(src) && src[j] == '.' {
			k := j + 1
			for k < len(src) && isIdent(src[k]) {
				k++
			}
			f := src[j+1 : k]
			if !contains(fields, f) {
				return fmt.Errorf("CEL expression %q: attribute %s.%s is not provided by this waypoint (it has %s.{%s})", src, word, f, word, strings.Join(fields, ","))
			}
			j = k
		}
		i = j - 1
	}
	return nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func isIdentStart(c byte) bool { return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
func isIdent(c byte) bool      { return isIdentStart(c) || (c >= '0' && c <= '9') }

// Bool evaluates the program as a filter: true only when it yields true
// (an error, such as a missing header, is false, as in Envoy).
func (p *Program) Bool(a interpreter.Activation) bool {
	v, _, err := p.prg.Eval(a)
	if err != nil {
		return false
	}
	b, ok := v.(types.Bool)
	return ok && bool(b)
}

// String evaluates the program as a label value; ok is false on an error.
func (p *Program) Eval(a interpreter.Activation) (string, bool) {
	v, _, err := p.prg.Eval(a)
	if err != nil || types.IsError(v) || types.IsUnknown(v) {
		return "", false
	}
	return asString(v)
}

func asString(v ref.Val) (string, bool) {
	switch x := v.(type) {
	case types.String:
		return string(x), true
	case types.Bool, types.Int, types.Uint, types.Double:
		s := v.ConvertToType(types.StringType)
		if str, ok := s.(types.String); ok {
			return string(str), true
		}
	}
	return "", false
}
