package translate

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	istioapi "istio.io/api/networking/v1alpha3"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// DestinationRules, as istiod applies them to a waypoint's clusters
// (cluster_waypoint.go: the rule of the service's hostname seen from the
// waypoint's namespace, its port-level settings, a cluster per subset):
//
// Which rule: a rule's host is resolved as istiod does (a short name gets
// "<namespace>.svc.<cluster domain>"; "*" and FQDNs stay). The rule for a
// host is looked for first among the rules in the waypoint's own namespace
// (those exported to it: no exportTo, "*", "." or its name), then among the rules
// of the service's namespace exported to the waypoint's ("*" or its
// name), then among those of the root namespace exported to it; within
// one namespace the exact host wins over a wildcard, the longest wildcard
// over a shorter one, and rules of one host are merged (the oldest's
// trafficPolicy; every subset, the first of a name). A rule with a
// workloadSelector is for the workloads it selects (sidecars), not for
// waypoints: it is not considered.
//
// What of it: trafficPolicy.loadBalancer (simple ROUND_ROBIN,
// LEAST_REQUEST (LEAST_CONN), RANDOM; consistentHash on httpHeaderName,
// httpCookie, useSourceIp or httpQueryParameterName, ringHash or maglev),
// portLevelSettings (the port's loadBalancer replaces the rule's) and
// subsets (their endpoints by pod labels, their own load balancing),
// outlierDetection (consecutive 5xx and gateway errors, interval, base
// ejection time, maximum ejection percent; the port's replaces the
// rule's). The rule's load balancer takes precedence over the Service's
// kgateway.dev/load-balancer annotation; connectionPool's
// tcp.connectTimeout, http.idleTimeout and http.maxRequestsPerConnection.
// Every other field set (the rest of the connection pool, TLS, tunnel,
// PROXY protocol, retry budget, locality and warm-up settings, the other
// outlier fields) is not honoured and is named in the rule's condition.
//
// ConditionWaypointAccepted (on the rule, written as
// kgateway-waypoint.kgateway.dev/WaypointAccepted): True/Accepted when the
// waypoint applies all of the rule, True/UnsupportedValue naming the
// fields it does not, False/Invalid when its load balancer cannot be
// honoured (the default balancing is used).
const kindDestinationRule = "DestinationRule"

// drIndex finds the DestinationRule of a host for this waypoint.
type drIndex struct {
	// local: the rules of the waypoint's own namespace it may use, by
	// resolved host, each host's rules oldest first.
	local drSet
	// exported: the rules of each namespace exported to the waypoint's.
	exported map[string]drSet
}

type drSet map[string][]*istionet.DestinationRule

// drHost is a rule's host as istiod resolves it (ResolveShortnameToFQDN).
func drHost(dr *istionet.DestinationRule, domain string) string {
	h := dr.Spec.GetHost()
	if h == "*" || net.ParseIP(h) != nil || strings.Contains(h, ".") {
		return h
	}
	return h + "." + dr.Namespace + ".svc." + domain
}

func newDRIndex(rules []*istionet.DestinationRule, waypointNS, domain string) *drIndex {
	if len(rules) == 0 {
		return nil
	}
	sorted := slices.Clone(rules)
	slices.SortStableFunc(sorted, func(a, b *istionet.DestinationRule) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time),
			cmp.Compare(a.Name, b.Name), cmp.Compare(a.Namespace, b.Namespace))
	})
	x := &drIndex{local: drSet{}, exported: map[string]drSet{}}
	for _, dr := range sorted {
		if dr.Spec.GetWorkloadSelector() != nil || dr.Spec.GetHost() == "" {
			continue
		}
		h := drHost(dr, domain)
		exp := dr.Spec.GetExportTo()
		if dr.Namespace == waypointNS {
			if len(exp) == 0 || slices.Contains(exp, "*") || slices.Contains(exp, ".") || slices.Contains(exp, waypointNS) {
				x.local[h] = append(x.local[h], dr)
			}
			continue
		}
		if len(exp) == 0 || slices.Contains(exp, "*") || slices.Contains(exp, waypointNS) {
			s := x.exported[dr.Namespace]
			if s == nil {
				s = drSet{}
				x.exported[dr.Namespace] = s
			}
			s[h] = append(s[h], dr)
		}
	}
	return x
}

// match is the rules of a set for host: the exact host's, else the most
// specific wildcard's that covers it.
func (s drSet) match(host string) []*istionet.DestinationRule {
	if rs, ok := s[host]; ok {
		return rs
	}
	best := ""
	for h := range s {
		if !strings.HasPrefix(h, "*") {
			continue
		}
		if h == "*" || strings.HasSuffix(host, h[1:]) {
			if len(h) > len(best) || (len(h) == len(best) && h < best) {
				best = h
			}
		}
	}
	if best == "" {
		return nil
	}
	return s[best]
}

// lookup is the rules that apply to a host of a service in svcNS.
func (x *drIndex) lookup(host, svcNS, rootNS string) []*istionet.DestinationRule {
	if rs := x.local.match(host); rs != nil {
		return rs
	}
	if rs := x.exported[svcNS].match(host); rs != nil {
		return rs
	}
	return x.exported[rootNS].match(host)
}

// drVerdict collects what the waypoint makes of one rule.
type drVerdict struct {
	hosts       []string
	unsupported []string
	invalid     []string
}

func (v *drVerdict) addUnsupported(field string) {
	if !slices.Contains(v.unsupported, field) {
		v.unsupported = append(v.unsupported, field)
	}
}

func (v *drVerdict) addInvalid(msg string) {
	if !slices.Contains(v.invalid, msg) {
		v.invalid = append(v.invalid, msg)
	}
}

// destinationRules applies the rules to every backend of the waypoint and
// reports on each rule it uses.
func (t *translator) destinationRules() {
	x := newDRIndex(t.snap.DestinationRules, t.gw.Namespace, t.opts.ClusterDomain)
	if x == nil {
		return
	}
	verdicts := map[*istionet.DestinationRule]*drVerdict{}
	keys := make([]string, 0, len(t.out.Backends))
	for k := range t.out.Backends {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		b := t.out.Backends[key]
		host, svc := t.backendHost(key, b)
		rules := x.lookup(host, b.Service.Namespace, t.opts.RootNamespace)
		if len(rules) == 0 {
			continue
		}
		for _, dr := range rules {
			v := verdicts[dr]
			if v == nil {
				v = &drVerdict{}
				verdicts[dr] = v
			}
			if !slices.Contains(v.hosts, host) {
				v.hosts = append(v.hosts, host)
			}
		}
		// Merged as istiod merges rules of one host: the first with a
		// traffic policy gives it; subsets by name, the first kept.
		var policy *istioapi.TrafficPolicy
		var policyRule *istionet.DestinationRule
		var subsets []*istioapi.Subset
		subsetRule := map[string]*istionet.DestinationRule{}
		for _, dr := range rules {
			if policy == nil && dr.Spec.GetTrafficPolicy() != nil {
				policy, policyRule = dr.Spec.GetTrafficPolicy(), dr
			}
			for _, ss := range dr.Spec.GetSubsets() {
				if _, dup := subsetRule[ss.GetName()]; dup || ss.GetName() == "" {
					continue
				}
				subsetRule[ss.GetName()] = dr
				subsets = append(subsets, ss)
			}
		}
		if policy != nil {
			pl := portPolicy(policy, b.Port)
			lb, ch := t.drLoadBalancer(pl, verdicts[policyRule], "trafficPolicy")
			applyLB(b, lb, ch)
			b.Outlier = outlierDetection(pl, verdicts[policyRule], "trafficPolicy")
			b.ConnectionPool = connectionPool(pl, verdicts[policyRule], "trafficPolicy", b.Protocol)
		}
		slices.SortFunc(subsets, func(a, c *istioapi.Subset) int { return cmp.Compare(a.GetName(), c.GetName()) })
		b.Subsets = nil
		for _, ss := range subsets {
			v := verdicts[subsetRule[ss.GetName()]]
			out := &ir.BackendSubset{Name: ss.GetName(), Endpoints: t.subsetEndpoints(svc, b, ss.GetLabels())}
			out.LoadBalancer, out.ConsistentHash = b.LoadBalancer, b.ConsistentHash
			if sp := ss.GetTrafficPolicy(); sp != nil {
				spl := portPolicy(sp, b.Port)
				outlierDetection(spl, v, "subsets["+ss.GetName()+"].trafficPolicy") // its fields reported
				connectionPool(spl, v, "subsets["+ss.GetName()+"].trafficPolicy", b.Protocol)
				lb, ch := t.drLoadBalancer(spl, v, "subsets["+ss.GetName()+"].trafficPolicy")
				if lb != nil || ch != nil {
					out.LoadBalancer, out.ConsistentHash = "", nil
					if lb != nil {
						out.LoadBalancer = *lb
					}
					out.ConsistentHash = ch
				}
			}
			b.Subsets = append(b.Subsets, out)
		}
	}
	for dr, v := range verdicts {
		t.drCondition(dr, v)
	}
}

// backendHost is the hostname a backend serves (what a rule's host is
// matched against), and its Service (nil for a ServiceEntry host).
func (t *translator) backendHost(key string, b *ir.Backend) (string, *corev1.Service) {
	if strings.HasPrefix(key, b.Service.Namespace+"/ServiceEntry/") {
		return b.Service.Name, nil
	}
	return b.Service.Name + "." + b.Service.Namespace + ".svc." + t.opts.ClusterDomain, t.services[b.Service]
}

// portPolicy is the traffic policy for a port: the port's settings
// replace the rule's, field by field (istiod's
// GetPortLevelTrafficPolicy). Only the fields the waypoint reads are
// merged; the rest are reported from the rule as written.
func portPolicy(p *istioapi.TrafficPolicy, port uint16) *portLevel {
	out := &portLevel{p: p, lb: p.GetLoadBalancer(), od: p.GetOutlierDetection(), cp: p.GetConnectionPool()}
	for _, pl := range p.GetPortLevelSettings() {
		if pl.GetPort().GetNumber() == uint32(port) {
			out.port = pl
			if pl.GetLoadBalancer() != nil {
				out.lb = pl.GetLoadBalancer()
			}
			if pl.GetOutlierDetection() != nil {
				out.od = pl.GetOutlierDetection()
			}
			if pl.GetConnectionPool() != nil {
				out.cp = pl.GetConnectionPool()
			}
			break
		}
	}
	return out
}

// portLevel is a traffic policy as it applies to one port.
type portLevel struct {
	p    *istioapi.TrafficPolicy
	port *istioapi.TrafficPolicy_PortTrafficPolicy
	lb   *istioapi.LoadBalancerSettings
	od   *istioapi.OutlierDetection
	cp   *istioapi.ConnectionPoolSettings
}

// drLoadBalancer reads a traffic policy's load balancer for a port, and
// reports on v the fields the waypoint does not honour (at path). lb is
// nil when the policy says nothing of the simple balancer, ch nil when it
// does not hash.
func (t *translator) drLoadBalancer(pl *portLevel, v *drVerdict, path string) (lb *string, ch *ir.ConsistentHash) {
	p := pl.p
	if p.GetTls() != nil {
		v.addUnsupported(path + ".tls")
	}
	if p.GetTunnel() != nil {
		v.addUnsupported(path + ".tunnel")
	}
	if p.GetProxyProtocol() != nil {
		v.addUnsupported(path + ".proxyProtocol")
	}
	if p.GetRetryBudget() != nil {
		v.addUnsupported(path + ".retryBudget")
	}
	for i, pls := range p.GetPortLevelSettings() {
		at := fmt.Sprintf("%s.portLevelSettings[%d]", path, i)
		if pls.GetTls() != nil {
			v.addUnsupported(at + ".tls")
		}
	}
	l := pl.lb
	if l == nil {
		return nil, nil
	}
	at := path + ".loadBalancer"
	if pl.port != nil && pl.port.GetLoadBalancer() != nil {
		at = fmt.Sprintf("%s.portLevelSettings[%d].loadBalancer", path, slices.Index(p.GetPortLevelSettings(), pl.port))
	}
	if l.GetLocalityLbSetting() != nil {
		v.addUnsupported(at + ".localityLbSetting")
	}
	if l.GetZoneAwareLbSetting() != nil {
		v.addUnsupported(at + ".zoneAwareLbSetting")
	}
	if l.GetWarmupDurationSecs() != nil || l.GetWarmup() != nil {
		v.addUnsupported(at + ".warmup")
	}
	if l.GetBackendUtilization() != nil {
		v.addUnsupported(at + ".backendUtilization")
	}
	switch x := l.GetLbPolicy().(type) {
	case *istioapi.LoadBalancerSettings_Simple:
		var s string
		switch x.Simple {
		case istioapi.LoadBalancerSettings_UNSPECIFIED:
			return nil, nil
		case istioapi.LoadBalancerSettings_ROUND_ROBIN:
			s = ""
		case istioapi.LoadBalancerSettings_LEAST_REQUEST, istioapi.LoadBalancerSettings_LEAST_CONN: //nolint:staticcheck // users still write the deprecated name; istiod treats it as LEAST_REQUEST
			s = ir.LoadBalancerLeastRequest
		case istioapi.LoadBalancerSettings_RANDOM:
			s = ir.LoadBalancerRandom
		default:
			v.addUnsupported(at + ".simple: " + x.Simple.String())
			return nil, nil
		}
		return &s, nil
	case *istioapi.LoadBalancerSettings_ConsistentHash:
		ch, problem := consistentHash(x.ConsistentHash)
		if problem != "" {
			v.addInvalid(at + ".consistentHash: " + problem)
			return nil, nil
		}
		return nil, ch
	}
	return nil, nil
}

// consistentHash reads a consistentHash; problem says why it cannot be
// honoured.
func consistentHash(c *istioapi.LoadBalancerSettings_ConsistentHashLB) (*ir.ConsistentHash, string) {
	ch := &ir.ConsistentHash{MinimumRingSize: c.GetMinimumRingSize()} //nolint:staticcheck // the deprecated top-level field istiod still reads
	switch k := c.GetHashKey().(type) {
	case *istioapi.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
		if !isToken(k.HttpHeaderName) {
			return nil, fmt.Sprintf("httpHeaderName %q is not a header name", k.HttpHeaderName)
		}
		ch.Header = strings.ToLower(k.HttpHeaderName)
	case *istioapi.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
		ck := k.HttpCookie
		if !isToken(ck.GetName()) {
			return nil, fmt.Sprintf("httpCookie.name %q is not a cookie name", ck.GetName())
		}
		if !cookieAttrValue(ck.GetPath()) {
			return nil, fmt.Sprintf("httpCookie.path %q is not a cookie path", ck.GetPath())
		}
		hc := &ir.HashCookie{Name: ck.GetName(), Path: ck.GetPath()}
		if ttl := ck.GetTtl(); ttl != nil {
			if ttl.GetSeconds() < 0 || ttl.GetNanos() < 0 {
				return nil, "httpCookie.ttl is negative"
			}
			hc.Generate, hc.TTLSeconds = true, ttl.GetSeconds()
		}
		for _, a := range ck.GetAttributes() {
			if !isToken(a.GetName()) || !cookieAttrValue(a.GetValue()) {
				return nil, fmt.Sprintf("httpCookie.attributes: %q=%q is not a cookie attribute", a.GetName(), a.GetValue())
			}
			hc.Attributes = append(hc.Attributes, ir.Header{Name: a.GetName(), Value: a.GetValue()})
		}
		ch.Cookie = hc
	case *istioapi.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
		if !k.UseSourceIp {
			return nil, "useSourceIp is false: no hash key"
		}
		ch.SourceIP = true
	case *istioapi.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
		if k.HttpQueryParameterName == "" {
			return nil, "httpQueryParameterName is empty"
		}
		ch.QueryParameter = k.HttpQueryParameterName
	default:
		return nil, "no hash key (httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName)"
	}
	switch a := c.GetHashAlgorithm().(type) {
	case *istioapi.LoadBalancerSettings_ConsistentHashLB_RingHash_:
		ch.MinimumRingSize = a.RingHash.GetMinimumRingSize()
	case *istioapi.LoadBalancerSettings_ConsistentHashLB_Maglev:
		ch.Maglev, ch.MinimumRingSize = true, 0
		ch.TableSize = a.Maglev.GetTableSize()
		if ch.TableSize != 0 && (!isPrime(ch.TableSize) || ch.TableSize > 5000011) {
			return nil, fmt.Sprintf("maglev.tableSize %d is not a prime of at most 5000011", ch.TableSize)
		}
	}
	if ch.MinimumRingSize > 1<<23 {
		return nil, fmt.Sprintf("minimumRingSize %d is over 8388608", ch.MinimumRingSize)
	}
	return ch, ""
}

// applyLB sets a backend's load balancing from a rule (over the Service's
// annotation).
func applyLB(b *ir.Backend, lb *string, ch *ir.ConsistentHash) {
	if lb != nil {
		b.LoadBalancer = *lb
	}
	if ch != nil {
		b.LoadBalancer, b.ConsistentHash = "", ch
	}
}

// subsetEndpoints are a Service backend's endpoints whose pod has every
// label of the subset.
func (t *translator) subsetEndpoints(svc *corev1.Service, b *ir.Backend, labels map[string]string) []string {
	if svc == nil {
		return nil
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if uint16(svc.Spec.Ports[i].Port) == b.Port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return nil
	}
	var out []string
	for _, es := range t.slices[b.Service] {
		if es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port, ok := slicePort(es, sp)
		if !ok {
			continue
		}
		for i := range es.Endpoints {
			e := &es.Endpoints[i]
			if e.TargetRef == nil || e.TargetRef.Kind != "Pod" {
				continue
			}
			pod := t.podByName(ir.NamespacedName{Namespace: cmp.Or(e.TargetRef.Namespace, es.Namespace), Name: e.TargetRef.Name})
			if pod == nil || !hasLabels(pod.Labels, labels) {
				continue
			}
			for _, a := range e.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				ep := netip.AddrPortFrom(addr.Unmap(), uint16(port)).String()
				if slices.Contains(b.Endpoints, ep) {
					out = append(out, ep)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// podByName finds a pod (indexed on first use).
func (t *translator) podByName(n ir.NamespacedName) *corev1.Pod {
	if t.drPods == nil {
		t.drPods = make(map[ir.NamespacedName]*corev1.Pod, len(t.snap.Pods))
		for _, p := range t.snap.Pods {
			t.drPods[ir.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
		}
	}
	return t.drPods[n]
}

// drCondition reports what the waypoint made of a rule.
func (t *translator) drCondition(dr *istionet.DestinationRule, v *drVerdict) {
	slices.Sort(v.hosts)
	msg := fmt.Sprintf("applied by waypoint %s/%s to %s", t.gw.Namespace, t.gw.Name, strings.Join(v.hosts, ", "))
	c := Condition{Kind: kindDestinationRule, Namespace: dr.Namespace, Name: dr.Name,
		Type: "WaypointAccepted", Status: "True", Reason: "Accepted"}
	if len(dr.Spec.GetSubsets()) > 0 {
		msg += "; subsets are accepted but unused: no route of this waypoint selects a subset"
	}
	if len(v.unsupported) > 0 {
		c.Reason = "UnsupportedValue"
		msg += "; not supported by this waypoint, ignored: " + strings.Join(v.unsupported, ", ")
	}
	if len(v.invalid) > 0 {
		c.Status, c.Reason = "False", "Invalid"
		msg += "; invalid, the default load balancing is used: " + strings.Join(v.invalid, "; ")
	}
	c.Message = msg
	t.cond(c)
}

// isToken reports whether s is an HTTP token (a header or cookie name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// cookieAttrValue reports whether s may be a cookie attribute's value (no
// control characters, no ';').
func cookieAttrValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f || c == ';' {
			return false
		}
	}
	return true
}

func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// outlierDetection reads a policy's outlierDetection for a port (the
// port's replaces the rule's) with Envoy's defaults as istiod leaves them
// (consecutive 5xx: 5; gateway errors: off; interval 10s; base ejection
// 30s; at most 10% ejected), and reports on v the fields it does not
// honour. nil when the policy has none.
func outlierDetection(pl *portLevel, v *drVerdict, path string) *ir.OutlierDetection {
	o := pl.od
	if o == nil {
		return nil
	}
	at := path + ".outlierDetection"
	if pl.port != nil && pl.port.GetOutlierDetection() == o {
		at = fmt.Sprintf("%s.portLevelSettings[%d].outlierDetection", path, slices.Index(pl.p.GetPortLevelSettings(), pl.port))
	}
	out := &ir.OutlierDetection{Consecutive5xx: 5, IntervalMs: 10000, BaseEjectionMs: 30000, MaxEjectionPercent: 10}
	if e := o.GetConsecutive_5XxErrors(); e != nil {
		out.Consecutive5xx = e.GetValue()
	}
	if e := o.GetConsecutiveGatewayErrors(); e != nil {
		out.ConsecutiveGatewayErrors = e.GetValue()
	}
	if d := o.GetInterval(); d != nil {
		out.IntervalMs = d.AsDuration().Milliseconds()
	}
	if d := o.GetBaseEjectionTime(); d != nil {
		out.BaseEjectionMs = d.AsDuration().Milliseconds()
	}
	if p := o.GetMaxEjectionPercent(); p != 0 {
		out.MaxEjectionPercent = uint32(min(max(p, 0), 100))
	}
	if o.GetConsecutiveErrors() != 0 { //nolint:staticcheck // reported, not honoured
		v.addUnsupported(at + ".consecutiveErrors (deprecated; use consecutive5xxErrors)")
	}
	if o.GetSplitExternalLocalOriginErrors() || o.GetConsecutiveLocalOriginFailures() != nil {
		v.addUnsupported(at + ".splitExternalLocalOriginErrors")
	}
	if o.GetMinHealthPercent() != 0 {
		v.addUnsupported(at + ".minHealthPercent")
	}
	if len(o.GetOutlierDetectionHttpErrorCodes()) > 0 {
		v.addUnsupported(at + ".outlierDetectionHttpErrorCodes")
	}
	if o.GetFailurePercentageThreshold() != nil {
		v.addUnsupported(at + ".failurePercentageThreshold")
	}
	return out
}

// connectionPool reads a policy's connectionPool for a port (the port's
// replaces the rule's): tcp.connectTimeout, http.idleTimeout and
// http.maxRequestsPerConnection are honoured on HTTP/1.1 and TCP
// backends; every other field set is reported on v. nil when it sets
// none of those.
func connectionPool(pl *portLevel, v *drVerdict, path, protocol string) *ir.ConnectionPool {
	c := pl.cp
	if c == nil {
		return nil
	}
	at := path + ".connectionPool"
	if pl.port != nil && pl.port.GetConnectionPool() == c {
		at = fmt.Sprintf("%s.portLevelSettings[%d].connectionPool", path, slices.Index(pl.p.GetPortLevelSettings(), pl.port))
	}
	out := &ir.ConnectionPool{}
	if tcp := c.GetTcp(); tcp != nil {
		if d := tcp.GetConnectTimeout(); d != nil && d.AsDuration() > 0 {
			out.ConnectTimeoutMs = max(1, d.AsDuration().Milliseconds())
		}
		if tcp.GetMaxConnections() != 0 {
			v.addUnsupported(at + ".tcp.maxConnections")
		}
		if tcp.GetTcpKeepalive() != nil {
			v.addUnsupported(at + ".tcp.tcpKeepalive")
		}
		if tcp.GetMaxConnectionDuration() != nil {
			v.addUnsupported(at + ".tcp.maxConnectionDuration")
		}
		if tcp.GetIdleTimeout() != nil {
			v.addUnsupported(at + ".tcp.idleTimeout")
		}
	}
	if h := c.GetHttp(); h != nil {
		if d := h.GetIdleTimeout(); d != nil && d.AsDuration() > 0 {
			out.IdleTimeoutMs = max(1, d.AsDuration().Milliseconds())
		}
		if n := h.GetMaxRequestsPerConnection(); n > 0 {
			out.MaxRequestsPerConnection = uint32(n)
		}
		for _, f := range []struct {
			set  bool
			name string
		}{
			{h.GetHttp1MaxPendingRequests() != 0, "http1MaxPendingRequests"},
			{h.GetHttp2MaxRequests() != 0, "http2MaxRequests"},
			{h.GetMaxRetries() != 0, "maxRetries"},
			{h.GetH2UpgradePolicy() != istioapi.ConnectionPoolSettings_HTTPSettings_DEFAULT, "h2UpgradePolicy"},
			{h.GetUseClientProtocol(), "useClientProtocol"},
			{h.GetMaxConcurrentStreams() != 0, "maxConcurrentStreams"},
			{h.GetHttp2KeepAlive() != nil, "http2KeepAlive"},
		} {
			if f.set {
				v.addUnsupported(at + ".http." + f.name)
			}
		}
	}
	if *out == (ir.ConnectionPool{}) {
		return nil
	}
	if protocol == "H2C" {
		v.addUnsupported(at + " (connectTimeout, idleTimeout, maxRequestsPerConnection on an HTTP/2 port)")
		return nil
	}
	return out
}
