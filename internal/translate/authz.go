package translate

import (
	"fmt"
	"sort"
	"strings"

	secv1beta1 "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// attachPolicies binds AuthorizationPolicies to the served service ports.
// Only targetRefs (or the older targetRef) attach a policy to a waypoint:
// kind Service (the service's ports), kind Gateway (every service of this
// waypoint, same namespace only) and kind GatewayClass (from the root
// namespace only). Policies with a selector or with no target are for
// workloads, not waypoints, and are left alone.
func (t *translator) attachPolicies() {
	for _, p := range t.snap.AuthorizationPolicies {
		refs := p.Spec.GetTargetRefs()
		if p.Spec.GetTargetRef() != nil {
			refs = append([]*typev1beta1.PolicyTargetReference{p.Spec.GetTargetRef()}, refs...)
		}
		if len(refs) == 0 {
			continue // selector or namespace-wide: not a waypoint policy
		}
		if problems := targetProblems(p.Spec.GetSelector() != nil, p.Spec.GetTargetRef(), p.Spec.GetTargetRefs(), p.Namespace); problems != "" {
			// Istio's validation would refuse the policy: it binds nothing.
			t.cond(Condition{Kind: "AuthorizationPolicy", Namespace: p.Namespace, Name: p.Name,
				Type: "WaypointAccepted", Status: "False", Reason: "Invalid", Message: problems})
			continue
		}
		var policy *ir.AuthzPolicy
		bound := false
		for _, ref := range refs {
			services, reason := t.policyTargets(p, ref)
			if reason != "" {
				continue
			}
			if policy == nil {
				policy = convertPolicy(p)
			}
			for _, s := range services {
				for _, sp := range s.Ports {
					if !containsPolicy(sp.Policies, policy) {
						sp.Policies = append(sp.Policies, policy)
					}
				}
				bound = true
			}
			// Workload traffic is authorized by the policies that target
			// the waypoint itself (Istio's waypoint: the direct pod chain
			// has no service, so only Gateway and GatewayClass targets).
			if wp := t.out.WorkloadPort; wp != nil && targetsWaypoint(ref) {
				if !containsPolicy(wp.Policies, policy) {
					wp.Policies = append(wp.Policies, policy)
				}
				bound = true
			}
		}
		if policy != nil {
			c := Condition{Kind: "AuthorizationPolicy", Namespace: p.Namespace, Name: p.Name,
				Type: "WaypointAccepted", Status: "True", Reason: "Accepted",
				Message: fmt.Sprintf("bound to waypoint %s/%s", t.gw.Namespace, t.gw.Name)}
			if !bound {
				c.Status, c.Reason = "False", "TargetNotFound"
				c.Message = "the target is this waypoint, but it serves no service yet"
			}
			if policy.Invalid != "" {
				c.Message += "; invalid: " + policy.Invalid
			}
			t.cond(c)
		}
	}
	for _, s := range t.out.Services {
		for _, sp := range s.Ports {
			sortPolicies(sp)
		}
	}
	if t.out.WorkloadPort != nil {
		sortPolicies(t.out.WorkloadPort)
	}
}

func sortPolicies(sp *ir.ServicePort) {
	if len(sp.Policies) > 1 {
		sort.Slice(sp.Policies, func(i, j int) bool {
			return sp.Policies[i].Name.String() < sp.Policies[j].Name.String()
		})
	}
}

// targetsWaypoint reports whether a resolved targetRef is the waypoint
// itself (its Gateway or GatewayClass) rather than one of its services.
func targetsWaypoint(ref *typev1beta1.PolicyTargetReference) bool {
	return ref.GetGroup() == "gateway.networking.k8s.io" && (ref.GetKind() == "Gateway" || ref.GetKind() == "GatewayClass")
}

// policyTargets resolves one targetRef to the services of this waypoint it
// covers. A non-empty reason means the ref is not about this waypoint.
func (t *translator) policyTargets(p *istiosec.AuthorizationPolicy, ref *typev1beta1.PolicyTargetReference) ([]*ir.Service, string) {
	ns := p.Namespace
	if ref.GetNamespace() != "" {
		ns = ref.GetNamespace()
	}
	if ns != p.Namespace {
		return nil, "cross-namespace targets are not allowed"
	}
	switch {
	case ref.GetKind() == "Service" && (ref.GetGroup() == "" || ref.GetGroup() == "core"):
		if s := t.served[ir.NamespacedName{Namespace: ns, Name: ref.GetName()}]; s != nil {
			return []*ir.Service{s}, ""
		}
		return nil, "not a service of this waypoint"
	case ref.GetKind() == "ServiceEntry" && ref.GetGroup() == "networking.istio.io":
		if s := t.servedSE[ir.NamespacedName{Namespace: ns, Name: ref.GetName()}]; s != nil {
			return s, ""
		}
		return nil, "not a ServiceEntry of this waypoint"
	case ref.GetKind() == "Gateway" && ref.GetGroup() == "gateway.networking.k8s.io":
		if ns == t.gw.Namespace && ref.GetName() == t.gw.Name {
			return t.out.Services, ""
		}
		return nil, "another gateway"
	case ref.GetKind() == "GatewayClass" && ref.GetGroup() == "gateway.networking.k8s.io":
		if p.Namespace == t.opts.RootNamespace && ref.GetName() == string(t.gw.Spec.GatewayClassName) {
			return t.out.Services, ""
		}
		return nil, "GatewayClass targets apply only from the root namespace, to our class"
	}
	return nil, "unsupported target kind"
}

// targetProblems applies Istio's validation of a policy's targets
// (pkg/config/validation: validateOneOfSelectorType and
// validatePolicyTargetReference): one of selector, targetRef and
// targetRefs; each target named, in the policy's namespace, and of a kind
// a policy can target. It returns what is wrong, or "".
func targetProblems(selector bool, single *typev1beta1.PolicyTargetReference, refs []*typev1beta1.PolicyTargetReference, ns string) string {
	var errs []string
	set := 0
	for _, b := range []bool{selector, single != nil, len(refs) > 0} {
		if b {
			set++
		}
	}
	if set > 1 {
		errs = append(errs, "only one of selector, targetRef or targetRefs can be set")
	}
	check := func(what string, r *typev1beta1.PolicyTargetReference) {
		if r.GetName() == "" {
			errs = append(errs, what+": name must be set")
		}
		if r.GetNamespace() != "" && r.GetNamespace() != ns {
			errs = append(errs, fmt.Sprintf("%s: namespace %s: a policy can only target objects of its own namespace", what, r.GetNamespace()))
		}
		group := r.GetGroup()
		if group == "" {
			group = "core"
		}
		switch group + "/" + r.GetKind() {
		case "core/Service", "networking.istio.io/ServiceEntry", "gateway.networking.k8s.io/Gateway", "gateway.networking.k8s.io/GatewayClass":
		default:
			errs = append(errs, fmt.Sprintf("%s: %s/%s is not a policy target (Service, ServiceEntry, Gateway or GatewayClass)", what, r.GetGroup(), r.GetKind()))
		}
	}
	if single != nil {
		check("targetRef", single)
	}
	for i, r := range refs {
		check(fmt.Sprintf("targetRefs[%d]", i), r)
	}
	return strings.Join(errs, "; ")
}

func containsPolicy(list []*ir.AuthzPolicy, p *ir.AuthzPolicy) bool {
	for _, q := range list {
		if q == p {
			return true
		}
	}
	return false
}

// convertPolicy copies an AuthorizationPolicy into the IR as written.
func convertPolicy(p *istiosec.AuthorizationPolicy) *ir.AuthzPolicy {
	out := &ir.AuthzPolicy{
		Name:   ir.NamespacedName{Namespace: p.Namespace, Name: p.Name},
		Action: ir.AuthzAction(p.Spec.GetAction().String()),
		DryRun: strings.EqualFold(p.Annotations[AnnotationDryRun], "true"),
		Rules:  []*ir.AuthzRule{},
	}
	if prov := p.Spec.GetProvider(); prov != nil {
		out.Provider = prov.GetName()
	}
	if len(p.Spec.GetRules()) == 0 {
		out.Rules = nil // no rules: matches nothing
	}
	for _, r := range p.Spec.GetRules() {
		out.Rules = append(out.Rules, convertRule(r))
	}
	return out
}

func convertRule(r *secv1beta1.Rule) *ir.AuthzRule {
	out := &ir.AuthzRule{}
	for _, f := range r.GetFrom() {
		s := f.GetSource()
		if s == nil {
			s = &secv1beta1.Source{}
		}
		out.From = append(out.From, &ir.AuthzSource{
			Principals: s.GetPrincipals(), NotPrincipals: s.GetNotPrincipals(),
			RequestPrincipals: s.GetRequestPrincipals(), NotRequestPrincipals: s.GetNotRequestPrincipals(),
			Namespaces: s.GetNamespaces(), NotNamespaces: s.GetNotNamespaces(),
			ServiceAccounts: s.GetServiceAccounts(), NotServiceAccounts: s.GetNotServiceAccounts(),
			IPBlocks: s.GetIpBlocks(), NotIPBlocks: s.GetNotIpBlocks(),
			RemoteIPBlocks: s.GetRemoteIpBlocks(), NotRemoteIPBlocks: s.GetNotRemoteIpBlocks(),
			TrustDomains: s.GetTrustDomains(), NotTrustDomains: s.GetNotTrustDomains(),
		})
	}
	for _, to := range r.GetTo() {
		o := to.GetOperation()
		if o == nil {
			o = &secv1beta1.Operation{}
		}
		out.To = append(out.To, &ir.AuthzOperation{
			Hosts: o.GetHosts(), NotHosts: o.GetNotHosts(),
			Ports: o.GetPorts(), NotPorts: o.GetNotPorts(),
			Methods: o.GetMethods(), NotMethods: o.GetNotMethods(),
			Paths: o.GetPaths(), NotPaths: o.GetNotPaths(),
		})
	}
	for _, c := range r.GetWhen() {
		out.When = append(out.When, &ir.AuthzCondition{Key: c.GetKey(), Values: c.GetValues(), NotValues: c.GetNotValues()})
	}
	return out
}
