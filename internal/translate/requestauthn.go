package translate

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	secv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// attachRequestAuthentications binds RequestAuthentications (JWT rules) to
// the HTTP ports of the served services. Istio selects them for a waypoint
// with the same matcher as AuthorizationPolicies (pilot/pkg/model
// policyattachment.go ShouldAttachPolicy, called from authentication.go
// getConfigsForWorkload): only targetRefs (or, when targetRefs is empty, the
// older targetRef) attach; a selector or no target at all is for workloads
// and never applies to a waypoint. The targets are resolved exactly as for
// AuthorizationPolicies (policyTargets). JWT validation is an HTTP filter,
// so TCP ports get no rules.
func (t *translator) attachRequestAuthentications() {
	for _, ra := range t.snap.RequestAuthentications {
		refs := ra.Spec.GetTargetRefs()
		if len(refs) == 0 && ra.Spec.GetTargetRef() != nil {
			refs = []*typev1beta1.PolicyTargetReference{ra.Spec.GetTargetRef()}
		}
		if len(refs) == 0 {
			continue // selector or namespace-wide: not a waypoint policy
		}
		if problems := targetProblems(ra.Spec.GetSelector() != nil, ra.Spec.GetTargetRef(), ra.Spec.GetTargetRefs(), ra.Namespace); problems != "" {
			// Istio's validation would refuse the object: it binds nothing.
			t.cond(Condition{Kind: "RequestAuthentication", Namespace: ra.Namespace, Name: ra.Name,
				Type: "WaypointAccepted", Status: "False", Reason: "Invalid", Message: problems})
			continue
		}
		var services []*ir.Service
		targeted, waypointWide := false, false
		for _, ref := range refs {
			s, reason := t.requestAuthnTargets(ra, ref)
			if reason != "" {
				continue
			}
			targeted = true
			waypointWide = waypointWide || targetsWaypoint(ref)
			services = append(services, s...)
		}
		if !targeted {
			continue
		}
		c := Condition{Kind: "RequestAuthentication", Namespace: ra.Namespace, Name: ra.Name,
			Type: "WaypointAccepted", Status: "True", Reason: "Accepted",
			Message: fmt.Sprintf("bound to waypoint %s/%s", t.gw.Namespace, t.gw.Name)}
		if err := validateRequestAuthentication(&ra.Spec); err != nil {
			// The API server's validation (Istio ValidateRequestAuthentication)
			// would have refused the object, so it binds nothing.
			c.Status, c.Reason, c.Message = "False", "Invalid", err.Error()
			t.cond(c)
			continue
		}
		rules := convertJWTRules(ra)
		bound := false
		for _, s := range services {
			for _, sp := range s.Ports {
				if sp.Protocol != ir.ProtocolHTTP {
					continue
				}
				for _, r := range rules {
					if !containsJWTRule(sp.JWTRules, r) {
						sp.JWTRules = append(sp.JWTRules, r)
					}
				}
			}
			bound = true
		}
		// Workload traffic detected as HTTP validates the JWTs of the
		// RequestAuthentications that target the waypoint itself.
		if wp := t.out.WorkloadPort; wp != nil && waypointWide {
			for _, r := range rules {
				if !containsJWTRule(wp.JWTRules, r) {
					wp.JWTRules = append(wp.JWTRules, r)
				}
			}
			bound = true
		}
		if !bound {
			c.Status, c.Reason = "False", "TargetNotFound"
			c.Message = "the target is this waypoint, but it serves no service yet"
		}
		t.cond(c)
	}
	for _, s := range t.out.Services {
		for _, sp := range s.Ports {
			sortJWTRules(sp)
		}
	}
	if t.out.WorkloadPort != nil {
		sortJWTRules(t.out.WorkloadPort)
	}
}

func sortJWTRules(sp *ir.ServicePort) {
	// Stable: the rules of one policy keep their order.
	if len(sp.JWTRules) > 1 {
		sort.SliceStable(sp.JWTRules, func(i, j int) bool {
			return sp.JWTRules[i].Policy.String() < sp.JWTRules[j].Policy.String()
		})
	}
}

// requestAuthnTargets resolves one targetRef of a RequestAuthentication with
// the AuthorizationPolicy rules, which read only the policy's namespace.
func (t *translator) requestAuthnTargets(ra *istiosec.RequestAuthentication, ref *typev1beta1.PolicyTargetReference) ([]*ir.Service, string) {
	return t.policyTargets(&istiosec.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ra.Namespace, Name: ra.Name}}, ref)
}

func containsJWTRule(list []*ir.JWTRule, r *ir.JWTRule) bool {
	for _, q := range list {
		if q == r {
			return true
		}
	}
	return false
}

// convertJWTRules copies the jwtRules of a RequestAuthentication into the IR.
func convertJWTRules(ra *istiosec.RequestAuthentication) []*ir.JWTRule {
	var out []*ir.JWTRule
	for _, r := range ra.Spec.GetJwtRules() {
		if r == nil {
			continue
		}
		jr := &ir.JWTRule{
			Policy:                ir.NamespacedName{Namespace: ra.Namespace, Name: ra.Name},
			Issuer:                r.GetIssuer(),
			Audiences:             r.GetAudiences(),
			JwksURI:               r.GetJwksUri(),
			Jwks:                  r.GetJwks(),
			FromParams:            r.GetFromParams(),
			FromCookies:           r.GetFromCookies(),
			OutputPayloadToHeader: r.GetOutputPayloadToHeader(),
			ForwardOriginalToken:  r.GetForwardOriginalToken(),
			SpaceDelimitedClaims:  r.GetSpaceDelimitedClaims(),
			Required:              r.GetPresence() == secv1beta1.JWTRule_REQUIRED,
		}
		for _, h := range r.GetFromHeaders() {
			jr.FromHeaders = append(jr.FromHeaders, ir.JWTHeader{Name: h.GetName(), Prefix: h.GetPrefix()})
		}
		for _, c := range r.GetOutputClaimToHeaders() {
			jr.OutputClaimToHeaders = append(jr.OutputClaimToHeaders, ir.ClaimToHeader{Header: c.GetHeader(), Claim: c.GetClaim()})
		}
		if d := r.GetTimeout(); d != nil {
			jr.TimeoutMs = d.AsDuration().Milliseconds()
		}
		out = append(out, jr)
	}
	return out
}

// validateRequestAuthentication applies the checks of Istio's validation
// webhook (pkg/config/validation ValidateRequestAuthentication and
// validateJwtRule) that the files source would otherwise skip.
func validateRequestAuthentication(spec *secv1beta1.RequestAuthentication) error {
	var errs []string
	add := func(i int, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("jwtRules[%d]: ", i)+fmt.Sprintf(format, args...))
	}
	for i, r := range spec.GetJwtRules() {
		if r == nil {
			continue
		}
		if r.GetIssuer() == "" && r.GetJwksUri() == "" {
			add(i, "issuer or jwksUri must be non-empty string")
		}
		for _, a := range r.GetAudiences() {
			if a == "" {
				add(i, "audience must be non-empty string")
			}
		}
		if u := r.GetJwksUri(); u != "" {
			if err := checkJwksURI(u); err != nil {
				add(i, "%v", err)
			}
		}
		if r.GetJwks() != "" && r.GetJwksUri() != "" {
			add(i, "only one of jwks or jwksUri can be set")
		}
		if j := r.GetJwks(); j != "" {
			var set struct {
				Keys []json.RawMessage `json:"keys"`
			}
			if err := json.Unmarshal([]byte(j), &set); err != nil {
				add(i, "jwks parse error: %v", err)
			}
		}
		for _, h := range r.GetFromHeaders() {
			if h.GetName() == "" {
				add(i, "location header name must be non-empty string")
			}
		}
		for _, p := range r.GetFromParams() {
			if p == "" {
				add(i, "location query must be non-empty string")
			}
		}
		for _, c := range r.GetFromCookies() {
			if c == "" {
				add(i, "cookie name must be non-empty string")
			}
		}
		for _, c := range r.GetOutputClaimToHeaders() {
			if c.GetClaim() == "" || c.GetHeader() == "" {
				add(i, "outputClaimToHeaders header and claim value must be non-empty string")
				continue
			}
			if !isHeaderToken(c.GetHeader()) {
				add(i, "outputClaimToHeaders header %q is not a valid HTTP header name", c.GetHeader())
			}
		}
		if d := r.GetTimeout(); d != nil {
			if err := d.CheckValid(); err != nil || d.AsDuration().Milliseconds() < 1 {
				add(i, "timeout must be at least 1ms")
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// checkJwksURI is Istio security.ParseJwksURI: an absolute http or https URL
// with a host.
func checkJwksURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid jwksUri %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("jwksUri %q: scheme must be http or https", s)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("jwksUri %q has no host", s)
	}
	return nil
}

// isHeaderToken reports whether s is an RFC 7230 token, as header names must be.
func isHeaderToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
