// Package files is the standalone source: it reads Kubernetes manifests from
// YAML files and directories into a source.Snapshot, and watches them.
package files

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
	istiotel "istio.io/client-go/pkg/apis/telemetry/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"

	kgwv1alpha1 "github.com/kgateway-dev/kgateway-waypoint/internal/api/kgateway/v1alpha1"
	"github.com/kgateway-dev/kgateway-waypoint/internal/source"
)

// ObjectError says which object of which file could not be read, and why.
type ObjectError struct {
	File   string // path of the file
	Object string // "Kind namespace/name", or "document N" when unknown
	Reason string
}

func (e *ObjectError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.File, e.Object, e.Reason)
}

// LoadError collects every ObjectError of one load. When a load fails the
// caller keeps its last good snapshot.
type LoadError struct{ Errors []*ObjectError }

func (e *LoadError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, oe := range e.Errors {
		msgs[i] = oe.Error()
	}
	return strings.Join(msgs, "; ")
}

// kindKey identifies the Go type a manifest decodes into.
type kindKey struct{ group, kind string }

// kinds maps (API group, kind) to the API versions accepted for it. Versions
// of one kind share a schema, so all decode into the same Go type.
var kinds = map[kindKey][]string{
	{"", "Namespace"}:                     {"v1"},
	{"", "Service"}:                       {"v1"},
	{"", "Pod"}:                           {"v1"},
	{"", "Node"}:                          {"v1"},
	{"discovery.k8s.io", "EndpointSlice"}: {"v1"},
	{"gateway.networking.k8s.io", "GatewayClass"}:   {"v1", "v1beta1"},
	{"gateway.networking.k8s.io", "Gateway"}:        {"v1", "v1beta1"},
	{"gateway.networking.k8s.io", "HTTPRoute"}:      {"v1", "v1beta1"},
	{"gateway.networking.k8s.io", "GRPCRoute"}:      {"v1", "v1alpha2"},
	{"gateway.networking.k8s.io", "TCPRoute"}:       {"v1", "v1alpha2"},
	{"gateway.networking.k8s.io", "ReferenceGrant"}: {"v1", "v1beta1", "v1alpha2"},
	{"networking.istio.io", "ServiceEntry"}:         {"v1", "v1beta1", "v1alpha3"},
	{"networking.istio.io", "WorkloadEntry"}:        {"v1", "v1beta1", "v1alpha3"},
	{"security.istio.io", "AuthorizationPolicy"}:    {"v1", "v1beta1"},
	{"security.istio.io", "RequestAuthentication"}:  {"v1", "v1beta1"},
	// --- kgateway TrafficPolicy ---
	{kgwv1alpha1.Group, "TrafficPolicy"}:    {"v1alpha1"},
	{kgwv1alpha1.Group, "GatewayExtension"}: {"v1alpha1"},
	// --- Telemetry API (telemetry branch) ---
	{"telemetry.istio.io", "Telemetry"}: {"v1", "v1alpha1"},
	// --- end Telemetry API ---
	// DestinationRule (issue 15, branch dr).
	{"networking.istio.io", "DestinationRule"}: {"v1", "v1beta1", "v1alpha3"},
	// kgateway GatewayParameters: decoded and validated, then left out of
	// the snapshot (standalone deploys nothing).
	{kgwv1alpha1.Group, "GatewayParameters"}: {"v1alpha1"},
}

// clusterScoped kinds have no namespace.
var clusterScoped = map[string]bool{"Namespace": true, "GatewayClass": true, "Node": true}

// Load reads every manifest under paths (files, or directories searched
// recursively for .yaml/.yml files) into a Snapshot. Any object that fails
// to parse or validate fails the whole load with a *LoadError naming each bad
// object; kinds the waypoint does not use are skipped with a debug log.
func Load(paths []string, log *slog.Logger) (*source.Snapshot, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	files, err := listFiles(paths)
	if err != nil {
		return nil, err
	}
	l := &loader{snap: &source.Snapshot{}, seen: map[string]string{}, log: log}
	var docs []document
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			docs = append(docs, document{file: f, err: &ObjectError{File: f, Object: "file", Reason: err.Error()}})
			continue
		}
		docs = splitDocuments(f, data, docs)
	}
	l.load(docs)
	if len(l.errs) > 0 {
		return nil, &LoadError{Errors: l.errs}
	}
	return l.snap, nil
}

// LoadBytes reads manifests held in memory, named file for error messages.
func LoadBytes(file string, data []byte) (*source.Snapshot, error) {
	l := &loader{snap: &source.Snapshot{}, seen: map[string]string{}, log: slog.New(slog.DiscardHandler)}
	l.load(splitDocuments(file, data, nil))
	if len(l.errs) > 0 {
		return nil, &LoadError{Errors: l.errs}
	}
	return l.snap, nil
}

// listFiles expands paths into a sorted list of manifest files.
func listFiles(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, errors.New("no manifest path given (use -f PATH)")
	}
	var out []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("manifest path: %w", err)
		}
		if !st.IsDir() {
			out = append(out, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir // editors' and VCS folders
				}
				return nil
			}
			if isManifest(d.Name()) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("manifest path %s: %w", p, err)
		}
	}
	sort.Strings(out)
	return out, nil
}

func isManifest(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false // editor swap and temporary files
	}
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

type loader struct {
	snap *source.Snapshot
	errs []*ObjectError
	seen map[string]string // "Kind ns/name" -> file that defined it
	log  *slog.Logger
}

func (l *loader) fail(file, object, format string, args ...any) {
	l.errs = append(l.errs, &ObjectError{File: file, Object: object, Reason: fmt.Sprintf(format, args...)})
}

// document is one YAML document of a file, or an error reading the file
// (err set): the unit of work of a load.
type document struct {
	file string
	doc  int // 1-based position in the file
	raw  []byte
	err  *ObjectError
	// fast is the document decoded by decodeFast; nil: it takes the
	// general path (loadDocument).
	fast *decoded
}

// splitDocuments appends the non-empty documents of a file to docs (a
// YAML syntax error ends the file, as an error document).
func splitDocuments(file string, data []byte, docs []document) []document {
	r := utilyaml.NewYAMLReader(newBufReader(data))
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			return append(docs, document{file: file, err: &ObjectError{File: file, Object: fmt.Sprintf("document %d", doc),
				Reason: fmt.Sprintf("reading YAML: %v", err)}})
		}
		if blank(raw) {
			continue // empty document, e.g. a trailing "---"
		}
		docs = append(docs, document{file: file, doc: doc, raw: raw})
	}
}

// load adds the documents to the snapshot, in order. Decoding, most of the
// work, is done first for all of them on every CPU (decodeFast); errors,
// duplicates and the order of objects come out exactly as from one loop
// over the documents.
func (l *loader) load(docs []document) {
	workers := min(runtime.GOMAXPROCS(0), 8)
	if len(docs) < 64 {
		workers = 1
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(docs) {
					return
				}
				if d := &docs[i]; d.err == nil && !noFastPath {
					if d.fast = decodeFast(d.raw); d.fast != nil {
						d.raw = nil // decoded: let the text go now
					}
				}
			}
		})
	}
	wg.Wait()
	for i := range docs {
		d := &docs[i]
		switch {
		case d.err != nil:
			l.errs = append(l.errs, d.err)
		case d.fast != nil:
			l.finish(d.file, d.fast.kind, "", d.fast.obj, d.fast.meta)
		default:
			l.loadDocument(d.file, d.doc, d.raw)
		}
	}
}

func (l *loader) loadDocument(file string, doc int, raw []byte) {
	where := fmt.Sprintf("document %d", doc)
	var head struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Items []any `json:"items"`
	}
	if err := yaml.Unmarshal(raw, &head); err != nil {
		l.fail(file, where, "not a Kubernetes object: %v", err)
		return
	}
	if head.Kind == "" || head.APIVersion == "" {
		l.fail(file, where, "apiVersion and kind are required")
		return
	}
	if head.Kind == "List" || strings.HasSuffix(head.Kind, "List") && head.Items != nil {
		l.loadList(file, doc, raw)
		return
	}
	gv, err := parseGroupVersion(head.APIVersion)
	if err != nil {
		l.fail(file, where, "%v", err)
		return
	}
	versions, known := kinds[kindKey{gv.group, head.Kind}]
	if !known {
		l.log.Debug("skipping a kind the waypoint does not use", "file", file, "kind", head.Kind,
			"apiVersion", head.APIVersion, "name", head.Metadata.Name)
		return
	}
	object := head.Kind
	if head.Metadata.Name != "" {
		object = head.Kind + " " + qualify(head.Metadata.Namespace, head.Metadata.Name, head.Kind)
	}
	if !contains(versions, gv.version) {
		l.fail(file, object, "apiVersion %s is not supported for %s (use %s/%s)", head.APIVersion, head.Kind,
			joinGroup(gv.group), versions[0])
		return
	}
	if head.Metadata.Name == "" {
		l.fail(file, where, "%s has no metadata.name", head.Kind)
		return
	}
	obj, meta, err := decode(head.Kind, raw)
	if err != nil {
		l.fail(file, object, "%v", err)
		return
	}
	l.finish(file, head.Kind, object, obj, meta)
}

// finish checks a decoded object of kind (object names it for errors; ""
// for "Kind namespace/name") and adds it to the snapshot.
func (l *loader) finish(file, kind, object string, obj any, meta *metav1.ObjectMeta) {
	if clusterScoped[kind] {
		if meta.Namespace != "" {
			if object == "" {
				object = kind + " " + qualify(meta.Namespace, meta.Name, kind)
			}
			l.fail(file, object, "%s is cluster-scoped and takes no metadata.namespace", kind)
			return
		}
	} else if meta.Namespace == "" {
		meta.Namespace = "default" // as kubectl apply does without -n
	}
	key := kind + " " + qualify(meta.Namespace, meta.Name, kind)
	if prev, dup := l.seen[key]; dup {
		l.fail(file, key, "defined twice (also in %s)", prev)
		return
	}
	l.seen[key] = file
	if err := validate(obj); err != nil {
		l.fail(file, key, "%v", err)
		return
	}
	l.add(obj)
}

// loadList reads a v1 List (as kubectl get -o yaml prints) item by item.
func (l *loader) loadList(file string, doc int, raw []byte) {
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := yaml.Unmarshal(raw, &list); err != nil {
		l.fail(file, fmt.Sprintf("document %d", doc), "reading List: %v", err)
		return
	}
	for i, item := range list.Items {
		b, err := yaml.Marshal(item)
		if err != nil {
			l.fail(file, fmt.Sprintf("document %d item %d", doc, i), "%v", err)
			continue
		}
		l.loadDocument(file, doc, b)
	}
}

// decode strictly decodes one manifest into its API type: unknown or
// duplicated fields are errors, as kubectl's strict validation makes them.
func decode(kind string, raw []byte) (any, *metav1.ObjectMeta, error) {
	var obj any
	var meta *metav1.ObjectMeta
	switch kind {
	case "Namespace":
		o := &corev1.Namespace{}
		obj, meta = o, &o.ObjectMeta
	case "Service":
		o := &corev1.Service{}
		obj, meta = o, &o.ObjectMeta
	case "Pod":
		o := &corev1.Pod{}
		obj, meta = o, &o.ObjectMeta
	case "Node":
		o := &corev1.Node{}
		obj, meta = o, &o.ObjectMeta
	case "EndpointSlice":
		o := &discoveryv1.EndpointSlice{}
		obj, meta = o, &o.ObjectMeta
	case "GatewayClass":
		o := &gwv1.GatewayClass{}
		obj, meta = o, &o.ObjectMeta
	case "Gateway":
		o := &gwv1.Gateway{}
		obj, meta = o, &o.ObjectMeta
	case "HTTPRoute":
		o := &gwv1.HTTPRoute{}
		obj, meta = o, &o.ObjectMeta
	case "GRPCRoute":
		o := &gwv1.GRPCRoute{}
		obj, meta = o, &o.ObjectMeta
	case "TCPRoute":
		o := &gwv1.TCPRoute{}
		obj, meta = o, &o.ObjectMeta
	case "ReferenceGrant":
		o := &gwv1.ReferenceGrant{}
		obj, meta = o, &o.ObjectMeta
	case "ServiceEntry":
		o := &istionet.ServiceEntry{}
		obj, meta = o, &o.ObjectMeta
	case "WorkloadEntry":
		o := &istionet.WorkloadEntry{}
		obj, meta = o, &o.ObjectMeta
	case "AuthorizationPolicy":
		o := &istiosec.AuthorizationPolicy{}
		obj, meta = o, &o.ObjectMeta
	case "RequestAuthentication":
		o := &istiosec.RequestAuthentication{}
		obj, meta = o, &o.ObjectMeta
	case "TrafficPolicy": // kgateway TrafficPolicy
		o := &kgwv1alpha1.TrafficPolicy{}
		obj, meta = o, &o.ObjectMeta
	case "GatewayExtension":
		o := &kgwv1alpha1.GatewayExtension{}
		obj, meta = o, &o.ObjectMeta
	// --- Telemetry API (telemetry branch) ---
	case "Telemetry":
		o := &istiotel.Telemetry{}
		obj, meta = o, &o.ObjectMeta
	// --- end Telemetry API ---
	case "DestinationRule":
		o := &istionet.DestinationRule{}
		obj, meta = o, &o.ObjectMeta
	case "GatewayParameters":
		o := &kgwv1alpha1.GatewayParameters{}
		obj, meta = o, &o.ObjectMeta
	default:
		return nil, nil, fmt.Errorf("unsupported kind %s", kind)
	}
	if err := yaml.UnmarshalStrict(raw, obj); err != nil {
		return nil, nil, fmt.Errorf("invalid %s: %v", kind, cleanDecodeError(err))
	}
	// Istio's generated decoders let unknown spec fields pass; decode the
	// spec once more, strictly, so a typo is an error and not a silently
	// different policy.
	var spec proto.Message
	switch o := obj.(type) {
	case *istiosec.AuthorizationPolicy:
		spec = &o.Spec
	case *istiosec.RequestAuthentication:
		spec = &o.Spec
	case *istionet.ServiceEntry:
		spec = &o.Spec
	case *istionet.WorkloadEntry:
		spec = &o.Spec
	// --- Telemetry API (telemetry branch) ---
	case *istiotel.Telemetry:
		spec = &o.Spec
		// --- end Telemetry API ---
	case *istionet.DestinationRule:
		spec = &o.Spec
	}
	if spec != nil {
		if err := strictProtoSpec(raw, spec); err != nil {
			return nil, nil, fmt.Errorf("invalid %s: spec: %w", kind, err)
		}
	}
	return obj, meta, nil
}

// strictProtoSpec decodes the manifest's spec into a fresh message of the
// same type, failing on unknown fields.
func strictProtoSpec(raw []byte, spec proto.Message) error {
	j, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return err
	}
	var doc struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(j, &doc); err != nil || len(doc.Spec) == 0 {
		return err
	}
	fresh := spec.ProtoReflect().New().Interface()
	return protojson.Unmarshal(doc.Spec, fresh)
}

func (l *loader) add(obj any) {
	s := l.snap
	switch o := obj.(type) {
	case *corev1.Namespace:
		s.Namespaces = append(s.Namespaces, o)
	case *corev1.Service:
		s.Services = append(s.Services, o)
	case *corev1.Pod:
		s.Pods = append(s.Pods, o)
	case *corev1.Node:
		s.Nodes = append(s.Nodes, o)
	case *discoveryv1.EndpointSlice:
		s.EndpointSlices = append(s.EndpointSlices, o)
	case *gwv1.GatewayClass:
		s.GatewayClasses = append(s.GatewayClasses, o)
	case *gwv1.Gateway:
		s.Gateways = append(s.Gateways, o)
	case *gwv1.HTTPRoute:
		s.HTTPRoutes = append(s.HTTPRoutes, o)
	case *gwv1.GRPCRoute:
		s.GRPCRoutes = append(s.GRPCRoutes, o)
	case *gwv1.TCPRoute:
		s.TCPRoutes = append(s.TCPRoutes, o)
	case *gwv1.ReferenceGrant:
		s.ReferenceGrants = append(s.ReferenceGrants, o)
	case *istionet.ServiceEntry:
		s.ServiceEntries = append(s.ServiceEntries, o)
	case *istionet.WorkloadEntry:
		s.WorkloadEntries = append(s.WorkloadEntries, o)
	case *istiosec.AuthorizationPolicy:
		s.AuthorizationPolicies = append(s.AuthorizationPolicies, o)
	case *istiosec.RequestAuthentication:
		s.RequestAuthentications = append(s.RequestAuthentications, o)
	case *kgwv1alpha1.TrafficPolicy: // kgateway TrafficPolicy
		s.TrafficPolicies = append(s.TrafficPolicies, o)
	case *kgwv1alpha1.GatewayExtension:
		s.GatewayExtensions = append(s.GatewayExtensions, o)
	// --- Telemetry API (telemetry branch) ---
	case *istiotel.Telemetry:
		s.Telemetries = append(s.Telemetries, o)
		// --- end Telemetry API ---
	case *istionet.DestinationRule:
		s.DestinationRules = append(s.DestinationRules, o)
	}
}

type groupVersion struct{ group, version string }

func parseGroupVersion(apiVersion string) (groupVersion, error) {
	parts := strings.Split(apiVersion, "/")
	switch {
	case len(parts) == 1 && parts[0] != "":
		return groupVersion{"", parts[0]}, nil
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return groupVersion{parts[0], parts[1]}, nil
	}
	return groupVersion{}, fmt.Errorf("malformed apiVersion %q", apiVersion)
}

func joinGroup(group string) string {
	if group == "" {
		return "core"
	}
	return group
}

func qualify(ns, name, kind string) string {
	if clusterScoped[kind] {
		return name
	}
	if ns == "" {
		ns = "default"
	}
	return ns + "/" + name
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// blank reports whether a document holds nothing but blank lines and
// comment lines.
func blank(b []byte) bool {
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte("\n"))
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}

// cleanDecodeError shortens the decoder's messages to what a user can act on.
func cleanDecodeError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
	msg = strings.TrimPrefix(msg, "error unmarshaling JSON: ")
	return msg
}
