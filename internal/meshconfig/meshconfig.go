// Package meshconfig reads Istio's MeshConfig, the document under the "mesh"
// key of the istio ConfigMap (what istiod reads with --meshConfig), and
// exposes the parts the waypoint uses: path normalization, the external
// authorization providers named by CUSTOM AuthorizationPolicies, the default
// HTTP retry policy, the root namespace and the trust domain with its
// aliases. It is the sources' parser (standalone's --mesh-config file, the
// cluster's ConfigMap): the translator copies what the data plane needs into
// the ir, and the proxy never imports this package.
//
// The document is decoded strictly into istio.io/api mesh/v1alpha1.MeshConfig
// (YAML to JSON, then protojson): a field MeshConfig does not have is an error
// naming the field. Validation follows istiod: what istiod's mesh validation
// rejects (pkg/config/validation: provider names, service, port, statusOnError,
// pathPrefix) makes Load fail; what only istiod's ext_authz builder rejects
// (pilot/pkg/security/authz/builder/extauthz.go: a lone "*" in a header list)
// keeps the provider with Invalid set, and CUSTOM policies naming it must deny
// every request they select, as istiod's "default-deny-all-due-to-bad-CUSTOM-
// action" does.
package meshconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	envoytype "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	"sigs.k8s.io/yaml"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Defaults istiod applies to a mesh config that leaves these fields empty
// (pkg/config/mesh DefaultMeshConfig).
const (
	DefaultRootNamespace = "istio-system"
	DefaultTrustDomain   = "cluster.local"
	// DefaultExtAuthzTimeout is istiod's timeoutOrDefault for both provider kinds.
	DefaultExtAuthzTimeout = 600 * time.Second
	// DefaultStatusOnError is Envoy's ext_authz status_on_error default
	// (istiod leaves the field unset when statusOnError is empty).
	DefaultStatusOnError = 403
)

// Config is what the waypoint uses of a MeshConfig.
type Config struct {
	// Mesh is the decoded document, for fields not lifted out below.
	Mesh *meshv1alpha1.MeshConfig
	// PathNormalization is pathNormalization.normalization (DEFAULT is BASE).
	PathNormalization ir.PathNormalization
	// ExtAuthzProviders holds the extensionProviders of kind envoyExtAuthzHttp
	// and envoyExtAuthzGrpc by name. Other kinds (tracing, logging, ...) are
	// accepted and left out: a CUSTOM policy naming one, or a name not here,
	// must deny what it selects (istiod: "available providers are ...").
	// Their Backend is left for the translator to resolve.
	ExtAuthzProviders map[string]*ir.ExtAuthzProvider
	// DefaultRetry is defaultHttpRetryPolicy as istiod applies it to routes
	// without a retry policy (nil when the mesh config has none).
	DefaultRetry *ir.Retry
	// RootNamespace is rootNamespace, "istio-system" when empty.
	RootNamespace string
	// TrustDomain is trustDomain, "cluster.local" when empty.
	TrustDomain string
	// TrustDomainAliases is trustDomainAliases.
	TrustDomainAliases []string
	// Telemetry is the telemetry providers and defaults (telemetry.go).
	Telemetry *TelemetrySettings
}

// Load reads and validates the MeshConfig YAML document at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("mesh config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates a MeshConfig YAML (or JSON) document. A
// ConfigMap (kind: ConfigMap) is accepted too: its data.mesh is read.
// An empty document is Istio's default mesh config.
func Parse(data []byte) (*Config, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	if doc == nil {
		doc, js = map[string]any{}, []byte("{}")
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("a MeshConfig is a mapping, found %T", doc)
	}
	if obj["kind"] == "ConfigMap" {
		d, _ := obj["data"].(map[string]any)
		mesh, ok := d["mesh"].(string)
		if !ok {
			return nil, errors.New("ConfigMap has no data.mesh")
		}
		return Parse([]byte(mesh))
	}
	mc := &meshv1alpha1.MeshConfig{}
	if f := unknownField(obj, mc.ProtoReflect().Descriptor(), ""); f != "" {
		return nil, fmt.Errorf("unknown field %q (MeshConfig has no such field)", f)
	}
	if err := protojson.Unmarshal(js, mc); err != nil {
		return nil, fmt.Errorf("invalid MeshConfig: %w", err)
	}
	c, err := fromMesh(mc)
	if err != nil {
		return nil, err
	}
	if _, set := obj["enableTracing"]; set {
		// istiod's default is true; only a document that says so turns
		// it off.
		c.Telemetry.EnableTracing = mc.GetEnableTracing()
	}
	return c, nil
}

func fromMesh(mc *meshv1alpha1.MeshConfig) (*Config, error) {
	c := &Config{
		Mesh:               mc,
		RootNamespace:      mc.GetRootNamespace(),
		TrustDomain:        mc.GetTrustDomain(),
		TrustDomainAliases: mc.GetTrustDomainAliases(),
		ExtAuthzProviders:  map[string]*ir.ExtAuthzProvider{},
		DefaultRetry:       defaultRetry(mc.GetDefaultHttpRetryPolicy()),
	}
	if c.RootNamespace == "" {
		c.RootNamespace = DefaultRootNamespace
	}
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultTrustDomain
	}
	switch t := mc.GetPathNormalization().GetNormalization(); t {
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_DEFAULT, meshv1alpha1.MeshConfig_ProxyPathNormalization_BASE:
		c.PathNormalization = ir.NormalizeBase
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_NONE:
		c.PathNormalization = ir.NormalizeNone
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_MERGE_SLASHES:
		c.PathNormalization = ir.NormalizeMergeSlashes
	case meshv1alpha1.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES:
		c.PathNormalization = ir.NormalizeDecodeAndMergeSlashes
	default:
		return nil, fmt.Errorf("pathNormalization.normalization: unknown value %d", t)
	}

	var errs []error
	seen := map[string]bool{}
	for i, ep := range mc.GetExtensionProviders() {
		name := ep.GetName()
		where := fmt.Sprintf("extensionProviders[%d] (%q)", i, name)
		switch {
		case name == "":
			errs = append(errs, fmt.Errorf("extensionProviders[%d]: name must not be empty", i))
		case seen[name]:
			errs = append(errs, fmt.Errorf("%s: name must be unique", where))
		}
		seen[name] = true
		var p *ir.ExtAuthzProvider
		var err error
		switch {
		case ep.GetEnvoyExtAuthzHttp() != nil:
			p, err = fromHTTP(ep.GetEnvoyExtAuthzHttp())
		case ep.GetEnvoyExtAuthzGrpc() != nil:
			p, err = fromGRPC(ep.GetEnvoyExtAuthzGrpc())
		case ep.GetProvider() == nil:
			err = errors.New("no provider kind is set")
		default:
			continue // another kind of provider: not ours
		}
		if err != nil {
			list := []error{err}
			var j interface{ Unwrap() []error }
			if errors.As(err, &j) {
				list = j.Unwrap()
			}
			for _, e := range list {
				errs = append(errs, fmt.Errorf("%s: %w", where, e))
			}
			continue
		}
		p.Name = name
		if _, dup := c.ExtAuthzProviders[name]; !dup && name != "" {
			c.ExtAuthzProviders[name] = p
		}
	}
	tel, terrs := telemetrySettings(mc)
	c.Telemetry = tel
	errs = append(errs, terrs...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

type commonFields struct {
	service, status string
	port            uint32
}

func fromHTTP(h *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) (*ir.ExtAuthzProvider, error) {
	p := &ir.ExtAuthzProvider{
		Kind:                            ir.ExtAuthzHTTP,
		FailOpen:                        h.GetFailOpen(),
		ClearRouteCache:                 h.GetClearRouteCache(),
		PathPrefix:                      h.GetPathPrefix(),
		IncludeRequestHeadersInCheck:    h.GetIncludeRequestHeadersInCheck(),
		IncludeAdditionalHeadersInCheck: h.GetIncludeAdditionalHeadersInCheck(),
		HeadersToUpstreamOnAllow:        h.GetHeadersToUpstreamOnAllow(),
		HeadersToDownstreamOnDeny:       h.GetHeadersToDownstreamOnDeny(),
		HeadersToDownstreamOnAllow:      h.GetHeadersToDownstreamOnAllow(),
	}
	if len(p.IncludeRequestHeadersInCheck) == 0 {
		p.IncludeRequestHeadersInCheck = h.GetIncludeHeadersInCheck() //nolint:staticcheck // istiod's fallback
	}
	errs := []error{common(p, commonFields{h.GetService(), h.GetStatusOnError(), h.GetPort()})}
	if pp := p.PathPrefix; pp != "" {
		if _, err := url.Parse(pp); err != nil {
			errs = append(errs, fmt.Errorf("invalid pathPrefix %q: %w", pp, err))
		}
		if !strings.HasPrefix(pp, "/") {
			errs = append(errs, fmt.Errorf("pathPrefix must begin with `/`, found %q", pp))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		field  string
		values []string
	}{
		{"includeRequestHeadersInCheck", h.GetIncludeRequestHeadersInCheck()},
		{"includeHeadersInCheck", h.GetIncludeHeadersInCheck()}, //nolint:staticcheck // still honoured
		{"headersToDownstreamOnDeny", p.HeadersToDownstreamOnDeny},
		{"headersToDownstreamOnAllow", p.HeadersToDownstreamOnAllow},
		{"headersToUpstreamOnAllow", p.HeadersToUpstreamOnAllow},
	} {
		for _, v := range l.values {
			if v == "*" && p.Invalid == "" {
				p.Invalid = fmt.Sprintf("a single wildcard (\"*\") is not supported in %s, use a prefix or suffix match", l.field)
			}
		}
	}
	body(p, h.GetIncludeRequestBodyInCheck())
	timeout(p, h.GetTimeout().AsDuration(), h.GetTimeout() != nil)
	return p, nil
}

func fromGRPC(g *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider) (*ir.ExtAuthzProvider, error) {
	p := &ir.ExtAuthzProvider{
		Kind:            ir.ExtAuthzGRPC,
		FailOpen:        g.GetFailOpen(),
		ClearRouteCache: g.GetClearRouteCache(),
	}
	if err := common(p, commonFields{g.GetService(), g.GetStatusOnError(), g.GetPort()}); err != nil {
		return nil, err
	}
	body(p, g.GetIncludeRequestBodyInCheck())
	timeout(p, g.GetTimeout().AsDuration(), g.GetTimeout() != nil)
	return p, nil
}

// common validates and sets service, port and statusOnError as istiod's
// mesh validation does (ValidateExtensionProviderEnvoyExtAuthz*).
func common(p *ir.ExtAuthzProvider, f commonFields) error {
	var errs []error
	if f.port < 1 || f.port > 65535 {
		errs = append(errs, fmt.Errorf("port must be in the range [1, 65535], found %d", f.port))
	}
	p.Port = uint16(f.port)
	p.Service = f.service
	if err := parseService(p); err != nil {
		errs = append(errs, err)
	}
	p.StatusOnError = DefaultStatusOnError
	if f.status != "" {
		code, err := strconv.ParseInt(f.status, 10, 32)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("invalid statusOnError %q: not a number", f.status))
		case envoytype.StatusCode_name[int32(code)] == "":
			errs = append(errs, fmt.Errorf("unsupported statusOnError %q: not an HTTP status Envoy knows", f.status))
		default:
			p.StatusOnError = int(code)
		}
	}
	return errors.Join(errs...)
}

var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 255 {
		return false
	}
	for _, l := range strings.Split(h, ".") {
		if len(l) > 63 || !dns1123Label.MatchString(l) {
			return false
		}
	}
	return true
}

// parseService splits "[<namespace>/]<hostname>" (istiod
// validateExtensionProviderService: a hostname (FQDN) or IP, optionally
// preceded by a namespace).
func parseService(p *ir.ExtAuthzProvider) error {
	s := p.Service
	if s == "" {
		return errors.New("service must not be empty")
	}
	ns, host, slash := strings.Cut(s, "/")
	if !slash {
		ns, host = "", s
	} else if ns != "*" && ns != "." && !dns1123Label.MatchString(ns) {
		return fmt.Errorf("invalid service %q: %q is not a namespace", s, ns)
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
		return fmt.Errorf("invalid service %q: %q is neither a hostname nor an IP address", s, host)
	}
	p.Namespace, p.Host = ns, host
	return nil
}

func body(p *ir.ExtAuthzProvider, b *meshv1alpha1.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody) {
	if b == nil {
		return
	}
	p.Body = &ir.ExtAuthzBody{
		MaxRequestBytes:     b.GetMaxRequestBytes(),
		AllowPartialMessage: b.GetAllowPartialMessage(),
		PackAsBytes:         b.GetPackAsBytes(),
	}
	if p.Body.MaxRequestBytes == 0 && p.Invalid == "" {
		// Envoy's BufferSettings requires max_request_bytes > 0 and rejects
		// the whole listener otherwise; the provider cannot be used.
		p.Invalid = "includeRequestBodyInCheck.maxRequestBytes must be greater than 0"
	}
}

func timeout(p *ir.ExtAuthzProvider, d time.Duration, set bool) {
	switch {
	case !set:
		p.TimeoutMs = DefaultExtAuthzTimeout.Milliseconds()
	case d < 0:
		p.TimeoutMs = DefaultExtAuthzTimeout.Milliseconds()
		if p.Invalid == "" {
			p.Invalid = fmt.Sprintf("timeout must not be negative, found %s", d)
		}
	case d > 0 && d < time.Millisecond:
		// The IR counts milliseconds; a positive timeout stays positive.
		p.TimeoutMs = 1
	default:
		// Envoy treats a zero timeout as no timeout.
		p.TimeoutMs = d.Milliseconds()
	}
}

// defaultRetry is istiod's retry.ConvertPolicy applied to the mesh's
// defaultHttpRetryPolicy, in the terms the proxy retries by: connection
// failures are always retried, and the response statuses in Codes.
// Without a policy the proxy keeps its built-in default (nil); attempts 0
// turns retries off. A policy that does not name its conditions (retryOn)
// retries 503, as istiod's default does; numbers in retryOn are statuses,
// "5xx" is every 5xx status, "gateway-error" 502, 503 and 504,
// "retriable-4xx" 409, and the other conditions (connect-failure, reset,
// refused-stream, ...) are connection failures the proxy retries anyway.
func defaultRetry(in *networkingv1alpha3.HTTPRetry) *ir.Retry {
	if in == nil {
		return nil
	}
	if in.GetAttempts() <= 0 {
		return &ir.Retry{}
	}
	out := &ir.Retry{Attempts: int(in.GetAttempts()), Codes: []int{503}}
	if on := strings.TrimSpace(in.GetRetryOn()); on != "" {
		out.Codes = nil
		seen := map[int]bool{}
		add := func(codes ...int) {
			for _, c := range codes {
				if !seen[c] {
					seen[c] = true
					out.Codes = append(out.Codes, c)
				}
			}
		}
		for _, part := range strings.Split(on, ",") {
			part = strings.TrimSpace(part)
			if code, err := strconv.Atoi(part); err == nil {
				if http.StatusText(code) != "" {
					add(code)
				}
				continue
			}
			codes, _ := RetryOnCodes(part)
			add(codes...)
		}
		slices.Sort(out.Codes)
	}
	if d := in.GetPerTryTimeout(); d != nil && d.AsDuration() > 0 {
		out.PerTryTimeoutMs = max(d.AsDuration().Milliseconds(), 1)
	}
	if d := in.GetBackoff(); d != nil && d.AsDuration() > 0 {
		out.BackoffMs = max(d.AsDuration().Milliseconds(), 1)
	}
	return out
}

// RetryOnCodes gives the statuses one of Envoy's retryOn conditions stands
// for: "5xx" every 5xx status, "gateway-error" 502, 503 and 504,
// "retriable-4xx" 409. The connection-failure conditions (connect-failure,
// reset, reset-before-request, refused-stream, http3-post-connect-failure)
// and retriable-status-codes (the statuses listed beside it) stand for no
// status and are known; known is false for any other name.
func RetryOnCodes(cond string) (codes []int, known bool) {
	switch cond {
	case "5xx":
		codes = make([]int, 0, 100)
		for c := 500; c < 600; c++ {
			codes = append(codes, c)
		}
		return codes, true
	case "gateway-error":
		return []int{502, 503, 504}, true
	case "retriable-4xx":
		return []int{409}, true
	case "reset", "reset-before-request", "connect-failure", "refused-stream", "retriable-status-codes", "http3-post-connect-failure":
		return nil, true
	}
	return nil, false
}
