package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/kgateway-dev/kgateway-waypoint/internal/meshconfig"
)

// MeshConfigKey is the key of istiod's mesh ConfigMap holding the mesh
// config.
const MeshConfigKey = "mesh"

// MeshConfigMapName is the name istiod gives its mesh ConfigMap: "istio",
// or "istio-<revision>" for a revision other than "" and "default".
func MeshConfigMapName(revision string) string {
	if revision == "" || revision == "default" {
		return "istio"
	}
	return "istio-" + revision
}

// MeshConfigMap names istiod's mesh ConfigMap and the client to watch it
// with.
type MeshConfigMap struct {
	Client    kubernetes.Interface
	Namespace string // the Istio namespace, istio-system
	Name      string // MeshConfigMapName(revision)
}

// meshWatch follows one ConfigMap with an informer of its own (the
// manager's cache would hold every ConfigMap of the cluster). The mesh
// config in force is the last valid one: absent ConfigMap or key, Istio's
// defaults (nil); an invalid document is logged and the previous one
// kept, as the files source keeps the last good files.
type meshWatch struct {
	ref      MeshConfigMap
	log      *slog.Logger
	onChange func()
	informer toolscache.SharedIndexInformer

	mu      sync.Mutex
	current *meshconfig.Config
	lastErr string
	rv      string // resourceVersion of the ConfigMap last read
}

func newMeshWatch(ref MeshConfigMap, log *slog.Logger, onChange func()) *meshWatch {
	lw := toolscache.NewListWatchFromClient(ref.Client.CoreV1().RESTClient(), "configmaps", ref.Namespace,
		fields.OneTermEqualSelector("metadata.name", ref.Name))
	m := &meshWatch{ref: ref, log: log, onChange: onChange,
		informer: toolscache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 0, toolscache.Indexers{})}
	_, _ = m.informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { m.update(obj) },
		UpdateFunc: func(_, obj any) { m.update(obj) },
		DeleteFunc: func(any) { m.update(nil) },
	})
	return m
}

// start runs the informer until ctx ends and waits for its first list.
func (m *meshWatch) start(ctx context.Context) error {
	go m.informer.Run(ctx.Done())
	if !toolscache.WaitForCacheSync(ctx.Done(), m.informer.HasSynced) {
		return fmt.Errorf("mesh ConfigMap %s/%s: informer did not sync", m.ref.Namespace, m.ref.Name)
	}
	return nil
}

func (m *meshWatch) update(obj any) {
	cm, _ := obj.(*corev1.ConfigMap)
	var next *meshconfig.Config
	var err error
	rv := ""
	if cm != nil {
		rv = cm.ResourceVersion
		if doc, ok := cm.Data[MeshConfigKey]; ok {
			next, err = meshconfig.Parse([]byte(doc))
		}
	}
	where := []any{"namespace", m.ref.Namespace, "name", m.ref.Name, "key", MeshConfigKey}
	m.mu.Lock()
	if rv != "" && rv == m.rv {
		m.mu.Unlock()
		return // a resync: nothing changed
	}
	m.rv = rv
	if err != nil {
		m.lastErr = err.Error()
		m.mu.Unlock()
		m.log.Error("mesh config rejected; keeping the last good one", append(where, "error", err.Error())...)
		return
	}
	m.current, m.lastErr = next, ""
	m.mu.Unlock()
	switch {
	case cm == nil:
		m.log.Info("mesh ConfigMap absent: Istio's default mesh config", where...)
	case next == nil:
		m.log.Warn("mesh ConfigMap has no mesh key: Istio's default mesh config", where...)
	default:
		m.log.Info("mesh config applied", append(where, "extAuthzProviders", len(next.ExtAuthzProviders),
			"pathNormalization", string(next.PathNormalization))...)
	}
	m.onChange()
}

// config is the mesh config in force (nil: Istio's defaults) and why the
// ConfigMap's current document is not ("" when it is).
func (m *meshWatch) config() (*meshconfig.Config, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current, m.lastErr
}
