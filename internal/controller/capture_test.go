package controller_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
)

// Pod-level capture on the real API server: with istio.io/waypoint-for:
// all on the Gateway, a pod of the enrolled namespace becomes one of the
// waypoint's workloads once it has an IP (this test stands in for the
// kubelet, writing the pod's status); its own istio.io/use-waypoint: none
// takes it out again, live, while the namespace still names the waypoint.
func TestPodCaptureFollowsLabels(t *testing.T) {
	env, ctl := startController(t)
	c := env.Client
	ctx := context.Background()
	apply(t, c, example(t, "httpbin-mesh.yaml"))
	apply(t, c, example(t, "waypoint-gw.yaml"))
	gw := &gwv1.Gateway{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "httpbin", Name: "httpbin-waypoint"}, gw); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(gw.DeepCopy())
	gw.Labels = map[string]string{"istio.io/waypoint-for": "all"}
	if err := c.Patch(ctx, gw, patch); err != nil {
		t.Fatal(err)
	}
	var token string
	eventually(t, 20*time.Second, "the waypoint's ServiceAccount and a token for it", func() error {
		tr, err := env.Clientset.CoreV1().ServiceAccounts("httpbin").CreateToken(ctx, "httpbin-waypoint", &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{"kgateway-waypoint"}}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		token = tr.Status.Token
		return nil
	})
	proxy := runProxy(t, ctl.XDSAddr().String(), token, ir.NamespacedName{Namespace: "httpbin", Name: "httpbin-waypoint"})

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "httpbin"},
		Spec: corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	// The kubelet's part: the pod runs and has an IP.
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.7", PodIPs: []corev1.PodIP{{IP: "10.244.0.7"}}}
	if err := c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	workloads := func(w *ir.Waypoint) string {
		if w == nil {
			return "<no config>"
		}
		s := ""
		for _, wl := range w.Workloads {
			s += fmt.Sprintf("%s/%s/%s%v %s;", wl.Kind, wl.Namespace, wl.Name, wl.Addresses, wl.Identity)
		}
		return s
	}
	want := "Pod/httpbin/app[10.244.0.7] spiffe://cluster.local/ns/httpbin/sa/app;"
	eventually(t, 20*time.Second, "the pod among the waypoint's workloads", func() error {
		w := proxy.last()
		if w == nil {
			return fmt.Errorf("no configuration yet")
		}
		if got := workloads(w); got != want || w.WorkloadPort == nil || w.WorkloadPort.Protocol != ir.ProtocolDetect {
			return fmt.Errorf("workloads %q (want %q), workload port %+v", got, want, w.WorkloadPort)
		}
		return nil
	})

	patch = client.MergeFrom(pod.DeepCopy())
	pod.Labels = map[string]string{"istio.io/use-waypoint": "none"}
	if err := c.Patch(ctx, pod, patch); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the pod opted out", func() error {
		w := proxy.last()
		if got := workloads(w); w == nil || got != "" {
			return fmt.Errorf("workloads %q", got)
		}
		if len(w.Services) == 0 {
			return fmt.Errorf("the namespace's services left too: %+v", w.Services)
		}
		return nil
	})
}
