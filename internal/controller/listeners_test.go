package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	"github.com/kgateway-dev/kgateway-waypoint/internal/dataplane"
	"github.com/kgateway-dev/kgateway-waypoint/internal/identity"
	"github.com/kgateway-dev/kgateway-waypoint/internal/standalone"
	"github.com/kgateway-dev/kgateway-waypoint/internal/translate"
)

// listenerCases are Gateways good and bad, with the verdict both modes
// must reach: the Gateway's Accepted condition and each listener's.
// Istio's own waypoint (pilot/pkg/config/kube/gateway, for its
// istio-waypoint class) marks an unexpected listener Accepted=False,
// UnsupportedProtocol, and keeps the Gateway; so do we, while at least
// one listener is a waypoint listener.
var listenerCases = []struct {
	name string
	// listeners is the Gateway's spec.listeners, in YAML.
	listeners string
	// accepted is the Gateway's Accepted condition (status/reason).
	accepted string
	// want is each listener's Accepted condition (status/reason), and
	// ResolvedRefs or Conflicted when they are not the good default.
	want []string
	// apiRefuses: the API server refuses the Gateway (the Gateway API
	// CRDs' validation), so the controller never sees it; standalone,
	// which has no API server, must refuse it all the same.
	apiRefuses bool
}{
	{name: "the seed's PROXY listener", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088}]`,
		accepted: "True/Accepted", want: []string{"mesh True/Accepted"}},
	{name: "Istio's HBONE listener", listeners: `[{name: mesh, protocol: HBONE, port: 15008}]`,
		accepted: "True/Accepted", want: []string{"mesh True/Accepted"}},
	{name: "PROXY and HBONE", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088}, {name: hbone, protocol: HBONE, port: 15008}]`,
		accepted: "True/Accepted", want: []string{"mesh True/Accepted", "hbone True/Accepted"}},
	{name: "PROXY on another port", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15089}]`,
		accepted: "False/ListenersNotValid", want: []string{"mesh False/PortUnavailable"}},
	{name: "PROXY on the HBONE port", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15008}]`,
		accepted: "False/ListenersNotValid", want: []string{"mesh False/PortUnavailable"}},
	{name: "HBONE on another port", listeners: `[{name: mesh, protocol: HBONE, port: 15009}]`,
		accepted: "False/ListenersNotValid", want: []string{"mesh False/PortUnavailable"}},
	{name: "a bad PROXY port next to a good HBONE listener", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15089}, {name: hbone, protocol: HBONE, port: 15008}]`,
		accepted: "True/ListenersNotValid", want: []string{"mesh False/PortUnavailable", "hbone True/Accepted"}},
	{name: "only an HTTP listener: no PROXY listener", listeners: `[{name: http, protocol: HTTP, port: 80}]`,
		accepted: "False/ListenersNotValid", want: []string{"http False/UnsupportedProtocol"}},
	{name: "TCP on the PROXY port", listeners: `[{name: mesh, protocol: TCP, port: 15088}]`,
		accepted: "False/ListenersNotValid", want: []string{"mesh False/UnsupportedProtocol"}},
	{name: "an extra HTTP listener", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088}, {name: http, protocol: HTTP, port: 80}]`,
		accepted: "True/ListenersNotValid", want: []string{"mesh True/Accepted", "http False/UnsupportedProtocol"}},
	{name: "extra HTTP and TCP listeners", listeners: `[{name: http, protocol: HTTP, port: 80}, {name: mesh, protocol: istio.io/PROXY, port: 15088}, {name: db, protocol: TCP, port: 5432}]`,
		accepted: "True/ListenersNotValid", want: []string{"http False/UnsupportedProtocol", "mesh True/Accepted", "db False/UnsupportedProtocol"}},
	{name: "a hostname on the PROXY listener", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088, hostname: httpbin.example.com}]`,
		accepted: "False/ListenersNotValid", want: []string{"mesh False/UnsupportedValue"}},
	{name: "tls on the PROXY listener", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088, tls: {mode: Passthrough}}]`,
		accepted: "False/ListenersNotValid", want: []string{"mesh False/UnsupportedValue"}},
	{name: "allowedRoutes from All", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088, allowedRoutes: {namespaces: {from: All}}}]`,
		accepted: "True/Accepted", want: []string{"mesh True/Accepted"}},
	{name: "allowedRoutes from a selector with expressions", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088,
		allowedRoutes: {namespaces: {from: Selector, selector: {matchExpressions: [{key: team, operator: In, values: [a, b]}]}}}}]`,
		accepted: "True/Accepted", want: []string{"mesh True/Accepted"}},
	{name: "allowedRoutes from a selector that cannot be used", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088,
		allowedRoutes: {namespaces: {from: Selector, selector: {matchExpressions: [{key: team, operator: In}]}}}}]`,
		accepted: "False/ListenersNotValid", want: []string{"mesh False/UnsupportedValue"}},
	{name: "allowedRoutes kinds: HTTPRoute only", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}]`,
		accepted: "True/Accepted", want: []string{"mesh True/Accepted"}},
	{name: "allowedRoutes kinds: one unsupported", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088, allowedRoutes: {kinds: [{kind: HTTPRoute}, {kind: TLSRoute}]}}]`,
		accepted: "True/Accepted", want: []string{"mesh True/Accepted ResolvedRefs=False/InvalidRouteKinds"}},
	{name: "duplicate listener names", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088}, {name: mesh, protocol: HBONE, port: 15008}]`,
		accepted: "False/ListenersNotValid", want: []string{"mesh False/UnsupportedValue", "mesh False/UnsupportedValue"}, apiRefuses: true},
	{name: "two PROXY listeners on one port", listeners: `[{name: mesh, protocol: istio.io/PROXY, port: 15088}, {name: mesh2, protocol: istio.io/PROXY, port: 15088}]`,
		accepted: "False/ListenersNotValid", want: []string{"mesh False/HostnameConflict Conflicted=True/HostnameConflict", "mesh2 False/HostnameConflict Conflicted=True/HostnameConflict"},
		apiRefuses: true},
	{name: "no listeners", listeners: `[]`, accepted: "False/ListenersNotValid", apiRefuses: true},
}

// gatewayYAML is a case's Gateway in namespace ns, with the namespace.
func gatewayYAML(ns, listeners string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %s}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: wp, namespace: %s}
spec:
  gatewayClassName: kgateway-waypoint
  listeners: %s
`, ns, ns, listeners)
}

// verdictOf writes a verdict as the table does, with the messages (which
// both modes must also agree on) on the side.
func verdictOf(accepted translate.Verdict, listeners []translate.ListenerVerdict) (string, []string, []string) {
	var ls, msgs []string
	for _, l := range listeners {
		s := fmt.Sprintf("%s %s/%s", l.Name, l.Accepted.Status, l.Accepted.Reason)
		if l.ResolvedRefs.Status != metav1.ConditionTrue {
			s += fmt.Sprintf(" ResolvedRefs=%s/%s", l.ResolvedRefs.Status, l.ResolvedRefs.Reason)
		}
		if l.Conflicted.Status != metav1.ConditionFalse {
			s += fmt.Sprintf(" Conflicted=%s/%s", l.Conflicted.Status, l.Conflicted.Reason)
		}
		ls = append(ls, s)
		msgs = append(msgs, fmt.Sprintf("%s: %q %q %q kinds %d", l.Name, l.Accepted.Message, l.ResolvedRefs.Message, l.Conflicted.Message, len(l.SupportedKinds)))
	}
	return string(accepted.Status) + "/" + accepted.Reason, ls, append(msgs, "gateway: "+accepted.Message)
}

// standaloneVerdict runs the case through the standalone waypoint (files,
// translation, the data plane on free loopback ports) and returns what it
// reports: the error Start refuses the Gateway with, or the verdict on its
// /debug/status.
func standaloneVerdict(t *testing.T, manifest string) (translate.Verdict, []translate.ListenerVerdict) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gateway.yaml"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	// A certificate of the waypoint's own, for the Gateways that select
	// native HBONE (Istio's HBONE listener).
	ca, err := identity.NewCA("cluster.local", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	own, err := ca.IssueBundle(identity.ID{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: "wp"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r, err := standalone.Start(standalone.Options{Paths: []string{dir},
		DataPlane: dataplane.Options{InboundAddress: "127.0.0.1:0", StatusAddress: "127.0.0.1:0", MetricsAddress: "127.0.0.1:0", AdminAddress: "127.0.0.1:0",
			Identity: identity.NewStatic(own)}})
	if err != nil {
		var na *translate.NotAcceptedError
		if !errors.As(err, &na) {
			t.Fatalf("standalone refused the Gateway without a verdict: %v", err)
		}
		if !strings.Contains(err.Error(), na.Verdict.Accepted.Message) {
			t.Errorf("standalone's error %q does not say why", err)
		}
		return na.Verdict.Accepted, na.Verdict.Listeners
	}
	defer r.Close()
	resp, err := http.Get("http://" + r.StatusAddr().String() + "/debug/status")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var st struct {
		Accepted  translate.Verdict           `json:"accepted"`
		Listeners []translate.ListenerVerdict `json:"listeners"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.Accepted, st.Listeners
}

// controllerVerdict reads the verdict the controller wrote on a Gateway's
// status.
func controllerVerdict(gw *gwv1.Gateway) (translate.Verdict, []translate.ListenerVerdict, error) {
	of := func(conds []metav1.Condition, typ string) (translate.Verdict, error) {
		c := meta.FindStatusCondition(conds, typ)
		if c == nil || c.ObservedGeneration != gw.Generation {
			return translate.Verdict{}, fmt.Errorf("no %s condition for generation %d", typ, gw.Generation)
		}
		return translate.Verdict{Status: c.Status, Reason: c.Reason, Message: c.Message}, nil
	}
	accepted, err := of(gw.Status.Conditions, "Accepted")
	if err != nil {
		return accepted, nil, err
	}
	if len(gw.Status.Listeners) != len(gw.Spec.Listeners) {
		return accepted, nil, fmt.Errorf("%d listener statuses for %d listeners", len(gw.Status.Listeners), len(gw.Spec.Listeners))
	}
	var ls []translate.ListenerVerdict
	for _, l := range gw.Status.Listeners {
		lv := translate.ListenerVerdict{Name: l.Name, SupportedKinds: l.SupportedKinds}
		for typ, v := range map[string]*translate.Verdict{"Accepted": &lv.Accepted, "ResolvedRefs": &lv.ResolvedRefs, "Conflicted": &lv.Conflicted} {
			if *v, err = of(l.Conditions, typ); err != nil {
				return accepted, nil, fmt.Errorf("listener %s: %w", l.Name, err)
			}
		}
		ls = append(ls, lv)
	}
	return accepted, ls, nil
}

// One table of Gateways, run through both modes: the standalone waypoint
// (what it reports) and the controller on a real API server (the status
// it writes). Both reach the table's verdict, with the same messages; a
// Gateway the API server refuses, standalone refuses too.
func TestListenerRulesSameInBothModes(t *testing.T) {
	env, _ := startController(t)
	c, ctx := env.Client, context.Background()
	type fromStandalone struct {
		accepted string
		want     []string
		msgs     []string
	}
	got := make([]fromStandalone, len(listenerCases))
	for i, tc := range listenerCases {
		ns := fmt.Sprintf("case-%d", i)
		manifest := gatewayYAML(ns, tc.listeners)
		t.Run("standalone/"+tc.name, func(t *testing.T) {
			a, ls := standaloneVerdict(t, manifest)
			accepted, want, msgs := verdictOf(a, ls)
			got[i] = fromStandalone{accepted, want, msgs}
			if accepted != tc.accepted || strings.Join(want, "; ") != strings.Join(tc.want, "; ") {
				t.Errorf("standalone: Gateway %s, listeners %q; want %s, %q", accepted, want, tc.accepted, tc.want)
			}
		})
		docs := strings.SplitN(manifest, "---\n", 2)
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		gw := &gwv1.Gateway{}
		if err := yaml.UnmarshalStrict([]byte(docs[1]), gw); err != nil {
			t.Fatal(err)
		}
		err := c.Create(ctx, gw)
		switch {
		case tc.apiRefuses && err == nil:
			t.Errorf("%s: the API server took a Gateway the table says it refuses", tc.name)
		case tc.apiRefuses:
			t.Logf("%s: the API server refuses it: %v", tc.name, err)
		case err != nil:
			t.Errorf("%s: creating the Gateway: %v", tc.name, err)
		}
	}
	for i, tc := range listenerCases {
		if tc.apiRefuses {
			continue
		}
		t.Run("controller/"+tc.name, func(t *testing.T) {
			gw := &gwv1.Gateway{}
			var accepted string
			var want, msgs []string
			eventually(t, 20*time.Second, "the Gateway's status", func() error {
				if err := c.Get(ctx, types.NamespacedName{Namespace: fmt.Sprintf("case-%d", i), Name: "wp"}, gw); err != nil {
					return err
				}
				a, ls, err := controllerVerdict(gw)
				if err != nil {
					return err
				}
				accepted, want, msgs = verdictOf(a, ls)
				return nil
			})
			if accepted != tc.accepted || strings.Join(want, "; ") != strings.Join(tc.want, "; ") {
				t.Errorf("controller: Gateway %s, listeners %q; want %s, %q", accepted, want, tc.accepted, tc.want)
			}
			// The controller words an accepted Gateway's message itself.
			if tc.accepted == "True/Accepted" {
				msgs, got[i].msgs = msgs[:len(msgs)-1], got[i].msgs[:len(got[i].msgs)-1]
			}
			if strings.Join(msgs, "\n") != strings.Join(got[i].msgs, "\n") {
				t.Errorf("the modes word it differently:\ncontroller:\n%s\nstandalone:\n%s", strings.Join(msgs, "\n"), strings.Join(got[i].msgs, "\n"))
			}
		})
	}
}
