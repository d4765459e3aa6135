package telemetry

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/kgateway-dev/kgateway-waypoint/internal/ir"
	"github.com/kgateway-dev/kgateway-waypoint/internal/proxy/telemetry/expr"
)

// The Telemetry API's tagOverrides change the labels of Istio's metric
// families: a label removed, an Istio label's value replaced, or a label
// added, its value from a CEL expression. Prometheus fixes a family's label
// names, so a change of shape replaces the families (their series start
// again, as Envoy's do when istiod changes the stats filter's tags). Tag
// values are part of the series key, so the per-family cap (MaxSeries) and
// its folding bound them like any other label; a value that is not valid
// UTF-8, or longer than MaxTagValueLength, is "unknown".

// MaxTagExprs bounds the distinct tag value expressions of a waypoint.
const MaxTagExprs = 8

// MaxTagValueLength bounds one tag value.
const MaxTagValueLength = 256

// metricShape is the label names of each family and where each label's
// value comes from: src[f][i] indexes seriesKey.values (Istio's values,
// then the MaxTagExprs expression values).
type metricShape struct {
	sig   string
	names [numMetrics][]string
	src   [numMetrics][]int
	exprs []*expr.Program
}

func familyLabels(f int) []string {
	if f <= mResponseSize {
		return HTTPLabels
	}
	return TCPLabels
}

var defaultShape = func() *metricShape {
	sh := &metricShape{}
	for f := range numMetrics {
		sh.names[f] = familyLabels(f)
		for i := range sh.names[f] {
			sh.src[f] = append(sh.src[f], i)
		}
	}
	return sh
}()

// pick is family f's label values of a series whose values are vals.
func (sh *metricShape) pick(f int, vals []string) []string {
	out := make([]string, len(sh.src[f]))
	for i, j := range sh.src[f] {
		out[i] = vals[j]
	}
	return out
}

func validLabelName(n string) bool {
	if n == "" || strings.HasPrefix(n, "__") {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		letter := c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z')
		digit := i > 0 && c >= '0' && c <= '9'
		if !letter && !digit {
			return false
		}
	}
	return true
}

// buildShape is the shape the metrics config's tag overrides give; the
// default shape when they change nothing.
func buildShape(mc *ir.MetricsConfig) (*metricShape, error) {
	if mc == nil {
		return defaultShape, nil
	}
	sh := &metricShape{}
	exprIndex := map[string]int{}
	changed := false
	var sig strings.Builder
	for f := range numMetrics {
		base := familyLabels(f)
		var tags []ir.TagOverride
		if o := mc.Overrides[metricName(f)]; o != nil {
			tags = o.Tags
		}
		byName := map[string]ir.TagOverride{}
		for _, tg := range tags {
			if !validLabelName(tg.Name) {
				return nil, fmt.Errorf("tag override %q: not a valid metric label name", tg.Name)
			}
			byName[tg.Name] = tg
			changed = true
		}
		src := func(tg ir.TagOverride) (int, error) {
			j, ok := exprIndex[tg.Value]
			if !ok {
				if len(sh.exprs) == MaxTagExprs {
					return 0, fmt.Errorf("more than %d distinct tag value expressions", MaxTagExprs)
				}
				p, err := expr.Compile(tg.Value)
				if err != nil {
					return 0, fmt.Errorf("tag override %q: %w", tg.Name, err)
				}
				j = len(sh.exprs)
				exprIndex[tg.Value] = j
				sh.exprs = append(sh.exprs, p)
			}
			return len(base) + j, nil
		}
		for i, l := range base {
			tg, ok := byName[l]
			switch {
			case !ok:
				sh.names[f] = append(sh.names[f], l)
				sh.src[f] = append(sh.src[f], i)
			case tg.Remove:
			default:
				j, err := src(tg)
				if err != nil {
					return nil, err
				}
				sh.names[f] = append(sh.names[f], l)
				sh.src[f] = append(sh.src[f], j)
			}
		}
		for _, tg := range tags { // sorted by name: added labels
			if tg.Remove || slices.Contains(base, tg.Name) {
				continue
			}
			j, err := src(tg)
			if err != nil {
				return nil, err
			}
			sh.names[f] = append(sh.names[f], tg.Name)
			sh.src[f] = append(sh.src[f], j)
		}
	}
	if !changed {
		return defaultShape, nil
	}
	for f := range numMetrics {
		fmt.Fprintf(&sig, "%d:%v:%v;", f, sh.names[f], sh.src[f])
	}
	for _, p := range sh.exprs {
		sig.WriteString(p.String() + "\x00")
	}
	sh.sig = sig.String()
	return sh, nil
}

func metricName(f int) string {
	for n, i := range metricIndex {
		if i == f {
			return n
		}
	}
	return ""
}

// applyShape replaces the metric families when the tag overrides change
// their labels (familiesCollector exposes the ones in force).
func (t *Telemetry) applyShape(mc *ir.MetricsConfig) error {
	sh, err := buildShape(mc)
	if err != nil {
		return err
	}
	cur := t.std.Load()
	if cur.shape.sig == sh.sig {
		return nil
	}
	m := newFamilies(sh)
	t.std.Store(m)
	return nil
}

// tagValues evaluates the shape's expressions into k.extra.
func (t *Telemetry) tagValues(sh *metricShape, k *seriesKey, vars *requestVars) {
	for j, p := range sh.exprs {
		v, ok := p.Eval(vars)
		if !ok || len(v) > MaxTagValueLength || !utf8.ValidString(v) {
			if ok {
				t.health.folded(foldInvalid)
			}
			v = unknown
		}
		k.extra[j] = v
	}
}
