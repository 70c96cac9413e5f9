package lab

import (
	"fmt"
	"io"
	"math"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricSet is one scrape of a Prometheus text endpoint (an agent's or the API server's /metrics).
type metricSet map[string]*dto.MetricFamily

func parseMetrics(r io.Reader) (metricSet, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return m, nil
}

// value is a counter's, gauge's or untyped sample's value; for a family name ending in _sum or _count
// of a histogram, the histogram's sum or count.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// samples calls fn with the labels and value of every sample of name, where name may be a histogram's
// name plus _sum or _count.
func (s metricSet) samples(name string, fn func(labels map[string]string, v float64)) {
	labelsOf := func(m *dto.Metric) map[string]string {
		out := map[string]string{}
		for _, lp := range m.GetLabel() {
			out[lp.GetName()] = lp.GetValue()
		}
		return out
	}
	if f, ok := s[name]; ok {
		for _, m := range f.GetMetric() {
			fn(labelsOf(m), value(m))
		}
		return
	}
	for suffix, pick := range map[string]func(*dto.Histogram) float64{
		"_sum":   func(h *dto.Histogram) float64 { return h.GetSampleSum() },
		"_count": func(h *dto.Histogram) float64 { return float64(h.GetSampleCount()) },
	} {
		base, ok := cutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f, ok := s[base]; ok {
			for _, m := range f.GetMetric() {
				if h := m.GetHistogram(); h != nil {
					fn(labelsOf(m), pick(h))
				}
			}
		}
	}
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

// matches reports whether labels hold every pair of want.
func matches(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// sum adds the samples of name whose labels match.
func (s metricSet) sum(name string, match map[string]string) float64 {
	var t float64
	s.samples(name, func(labels map[string]string, v float64) {
		if matches(labels, match) {
			t += v
		}
	})
	return t
}

// byLabelF adds the samples of name whose labels match, grouped by the value of label.
func (s metricSet) byLabelF(name, label string, match map[string]string) map[string]float64 {
	out := map[string]float64{}
	s.samples(name, func(labels map[string]string, v float64) {
		if k, ok := labels[label]; ok && matches(labels, match) {
			out[k] += v
		}
	})
	return out
}

// histogram is a Prometheus histogram: cumulative counts at upper bounds (ascending, without +Inf)
// and the total count.
type histogram struct {
	upper []float64
	cum   []int
	count int
}

// histogram returns the single histogram of family name.
func (s metricSet) histogram(name string) (histogram, bool) {
	f, ok := s[name]
	if !ok || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetHistogram() == nil {
		return histogram{}, false
	}
	h := f.GetMetric()[0].GetHistogram()
	out := histogram{count: int(h.GetSampleCount())}
	for _, b := range h.GetBucket() {
		if math.IsInf(b.GetUpperBound(), 1) {
			continue
		}
		out.upper = append(out.upper, b.GetUpperBound())
		out.cum = append(out.cum, int(b.GetCumulativeCount()))
	}
	return out, true
}

// sub is h minus an earlier scrape of the same histogram.
func (h histogram) sub(earlier histogram) histogram {
	out := histogram{upper: h.upper, cum: make([]int, len(h.cum)), count: h.count - earlier.count}
	for i := range h.cum {
		out.cum[i] = h.cum[i]
		if i < len(earlier.cum) {
			out.cum[i] -= earlier.cum[i]
		}
	}
	return out
}

// add sums two histograms with the same buckets (the zero histogram adds as nothing).
func (h histogram) add(o histogram) histogram {
	if h.upper == nil {
		return histogram{upper: o.upper, cum: append([]int(nil), o.cum...), count: o.count}
	}
	out := histogram{upper: h.upper, cum: append([]int(nil), h.cum...), count: h.count + o.count}
	for i := range out.cum {
		if i < len(o.cum) {
			out.cum[i] += o.cum[i]
		}
	}
	return out
}

// quantile estimates the q-quantile as Prometheus' histogram_quantile does: linear within the bucket
// that holds the rank, the top finite bound when the rank is beyond it, 0 without observations.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 || len(h.upper) == 0 {
		return 0
	}
	rank := q * float64(h.count)
	i := sort.Search(len(h.cum), func(i int) bool { return float64(h.cum[i]) >= rank })
	if i == len(h.cum) {
		return h.upper[len(h.upper)-1]
	}
	lower, below := 0.0, 0
	if i > 0 {
		lower, below = h.upper[i-1], h.cum[i-1]
	}
	inBucket := h.cum[i] - below
	if inBucket == 0 {
		return h.upper[i]
	}
	return lower + (h.upper[i]-lower)*(rank-float64(below))/float64(inBucket)
}
