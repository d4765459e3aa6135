package ir

// AuthzAction is what a matching authorization policy does.
type AuthzAction string

const (
	AuthzAllow  AuthzAction = "ALLOW"
	AuthzDeny   AuthzAction = "DENY"
	AuthzAudit  AuthzAction = "AUDIT"
	AuthzCustom AuthzAction = "CUSTOM"
)

// AuthzPolicy is one Istio AuthorizationPolicy bound to a service port of this
// waypoint. Field names and meanings follow security.istio.io/v1
// AuthorizationPolicy; values are copied as written (the proxy normalises and
// compiles them).
type AuthzPolicy struct {
	// Name is the policy's namespace/name, for logs and dumps.
	Name NamespacedName `json:"name"`
	// Action is ALLOW, DENY, AUDIT or CUSTOM.
	Action AuthzAction `json:"action"`
	// Provider is the CUSTOM action's extension provider name.
	Provider string `json:"provider,omitempty"`
	// DryRun is set by the istio.io/dry-run annotation: the policy is
	// evaluated and logged but never enforced.
	DryRun bool `json:"dryRun,omitempty"`
	// Rules: a request matches the policy when it matches any rule. Nil rules
	// match nothing; a rule with no fields matches everything.
	Rules []*AuthzRule `json:"rules"`
	// Invalid, when set, explains why the policy could not be fully
	// understood; the proxy then applies Istio's fail-closed treatment.
	Invalid string `json:"invalid,omitempty"`
}

// AuthzRule matches when From (any source) and To (any operation) and every
// When condition match. An empty list matches anything.
type AuthzRule struct {
	From []*AuthzSource    `json:"from,omitempty"`
	To   []*AuthzOperation `json:"to,omitempty"`
	When []*AuthzCondition `json:"when,omitempty"`
}

// AuthzSource is an Istio Source: every set field must match.
type AuthzSource struct {
	Principals           []string `json:"principals,omitempty"`
	NotPrincipals        []string `json:"notPrincipals,omitempty"`
	RequestPrincipals    []string `json:"requestPrincipals,omitempty"`
	NotRequestPrincipals []string `json:"notRequestPrincipals,omitempty"`
	Namespaces           []string `json:"namespaces,omitempty"`
	NotNamespaces        []string `json:"notNamespaces,omitempty"`
	ServiceAccounts      []string `json:"serviceAccounts,omitempty"`
	NotServiceAccounts   []string `json:"notServiceAccounts,omitempty"`
	IPBlocks             []string `json:"ipBlocks,omitempty"`
	NotIPBlocks          []string `json:"notIpBlocks,omitempty"`
	RemoteIPBlocks       []string `json:"remoteIpBlocks,omitempty"`
	NotRemoteIPBlocks    []string `json:"notRemoteIpBlocks,omitempty"`
	TrustDomains         []string `json:"trustDomains,omitempty"`
	NotTrustDomains      []string `json:"notTrustDomains,omitempty"`
}

// AuthzOperation is an Istio Operation: every set field must match.
type AuthzOperation struct {
	Hosts      []string `json:"hosts,omitempty"`
	NotHosts   []string `json:"notHosts,omitempty"`
	Ports      []string `json:"ports,omitempty"`
	NotPorts   []string `json:"notPorts,omitempty"`
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	Paths      []string `json:"paths,omitempty"`
	NotPaths   []string `json:"notPaths,omitempty"`
}

// AuthzCondition is an Istio Condition ("when"): the key's value must be one
// of Values (if any) and none of NotValues.
type AuthzCondition struct {
	Key       string   `json:"key"`
	Values    []string `json:"values,omitempty"`
	NotValues []string `json:"notValues,omitempty"`
}
