package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/manifests"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/kubernetes/fake"
)

// newMetricsAgent returns an agent (not running) whose datapath counters are c.
func newMetricsAgent(t *testing.T, c maps.Counters) *Agent {
	t.Helper()
	cfg := &config.Config{}
	cfg.SetDefaults()
	a, err := New(Options{Config: cfg, NodeName: "node-1", Client: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	a.readCounters = func() (maps.Counters, error) { return c, nil }
	return a
}

// scrape GETs /metrics through the agent's health handler, as Prometheus does, and parses the answer.
func scrape(t *testing.T, a *Agent) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	a.healthMux().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// sampleNames are the series names a query can use: the family names, and a histogram's _bucket, _sum
// and _count.
func sampleNames(fams map[string]*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for n, f := range fams {
		names[n] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[n+s] = true
			}
		}
	}
	return names
}

// someCounters are datapath counters with every verdict, every drop reason and an unnamed slot set.
func someCounters() maps.Counters {
	c := maps.Counters{Verdicts: map[string]maps.Metric{}, Drops: map[string]maps.Metric{}, Other: map[string]maps.Metric{}}
	for _, n := range maps.VerdictNames {
		c.Verdicts[n] = maps.Metric{Packets: 3, Bytes: 300}
	}
	for _, n := range maps.DropReasonNames {
		c.Drops[n] = maps.Metric{Packets: 2, Bytes: 200}
	}
	c.EventsLost = 5
	c.Other["slot_30"] = maps.Metric{Packets: 7, Bytes: 700}
	return c
}

// dashboardExprs returns every PromQL expression of the embedded Grafana dashboard: the panels' queries
// and the variables' definitions.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(manifests.Dashboard(), &doc); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var exprs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	return exprs
}

// TestMetricsServeEveryDashboardSeries: every series the shipped Grafana dashboard queries is one the
// agent's /metrics really exports (a renamed metric would leave a user's panel empty).
func TestMetricsServeEveryDashboardSeries(t *testing.T) {
	names := sampleNames(scrape(t, newMetricsAgent(t, someCounters())))
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("dashboard has %d queries, want the agent's panels", len(exprs))
	}
	series := regexp.MustCompile(`\b(?:kubedirect|process|go)_[a-zA-Z0-9_]+\b`)
	for _, e := range exprs {
		found := series.FindAllString(e, -1)
		if len(found) == 0 {
			t.Errorf("dashboard query %q names no kubedirect series", e)
		}
		for _, n := range found {
			if !names[n] {
				t.Errorf("dashboard query %q uses %s, which /metrics does not export", e, n)
			}
		}
	}
}

// TestMetricsKeepNamesOfTheHandWrittenExposition: the series users' dashboards already query keep their
// names, types and labels, and the datapath counters carry the values of kd_metrics.
func TestMetricsKeepNamesOfTheHandWrittenExposition(t *testing.T) {
	fams := scrape(t, newMetricsAgent(t, someCounters()))
	want := map[string]dto.MetricType{
		"kubedirect_ready": dto.MetricType_GAUGE, "kubedirect_services": dto.MetricType_GAUGE,
		"kubedirect_frontends": dto.MetricType_GAUGE, "kubedirect_backends": dto.MetricType_GAUGE,
		"kubedirect_tunnels": dto.MetricType_GAUGE, "kubedirect_endpoints": dto.MetricType_GAUGE,
		"kubedirect_services_skipped": dto.MetricType_GAUGE, "kubedirect_conntrack_entries": dto.MetricType_GAUGE,
		"kubedirect_conntrack_capacity":          dto.MetricType_GAUGE,
		"kubedirect_sync_errors_total":           dto.MetricType_COUNTER,
		"kubedirect_map_writes_total":            dto.MetricType_COUNTER,
		"kubedirect_datapath_packets_total":      dto.MetricType_COUNTER,
		"kubedirect_datapath_bytes_total":        dto.MetricType_COUNTER,
		"kubedirect_datapath_drop_packets_total": dto.MetricType_COUNTER,
		"kubedirect_datapath_drop_bytes_total":   dto.MetricType_COUNTER,
	}
	for n, typ := range want {
		f, ok := fams[n]
		if !ok {
			t.Errorf("/metrics lacks %s", n)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %v, was a %v", n, f.GetType(), typ)
		}
	}
	if got := value(fams, "kubedirect_conntrack_capacity", ""); got != float64(config.DefaultMapSizes().Conntrack) {
		t.Errorf("kubedirect_conntrack_capacity = %v, want the conntrack map size %d", got, config.DefaultMapSizes().Conntrack)
	}
	if got := value(fams, "kubedirect_datapath_packets_total", `verdict="dnat"`); got != 3 {
		t.Errorf(`kubedirect_datapath_packets_total{verdict="dnat"} = %v, want 3`, got)
	}
	if got := value(fams, "kubedirect_datapath_drop_bytes_total", `reason="no_local_backend"`); got != 200 {
		t.Errorf(`kubedirect_datapath_drop_bytes_total{reason="no_local_backend"} = %v, want 200`, got)
	}
	if got := value(fams, "kubedirect_flow_events_lost_total", ""); got != 5 {
		t.Errorf("kubedirect_flow_events_lost_total = %v, want the 5 of kd_metrics", got)
	}
}

// TestMetricsExportAnUnnamedDatapathCounter: a kd_metrics slot the Go side has no name for (a counter
// just added to the C enum) is exported, not silently dropped.
func TestMetricsExportAnUnnamedDatapathCounter(t *testing.T) {
	fams := scrape(t, newMetricsAgent(t, someCounters()))
	if got := value(fams, "kubedirect_datapath_counter_packets_total", `counter="slot_30"`); got != 7 {
		t.Errorf(`kubedirect_datapath_counter_packets_total{counter="slot_30"} = %v, want 7`, got)
	}
}

// TestMetricsServiceProgrammingLatency: a Service change seen after the first sync is observed once,
// when its map write is done; a change that wrote nothing (or came before ready) is not.
func TestMetricsServiceProgrammingLatency(t *testing.T) {
	a := newMetricsAgent(t, someCounters())
	a.noteChange("default/early") // before ready: the full sync covers it
	a.setReady()
	a.noteChange("default/web")
	a.noteChange("default/web") // a second event before the sync: one observation, from the first
	a.noteChange("default/same")
	a.programmed("default/web", true)
	a.programmed("default/same", false)
	a.programmed("default/early", true)
	a.programmed("default/web", true) // a resync without a new event
	h := scrape(t, a)["kubedirect_service_programming_latency_seconds"]
	if h == nil || len(h.Metric) != 1 {
		t.Fatalf("kubedirect_service_programming_latency_seconds missing: %v", h)
	}
	if n := h.Metric[0].GetHistogram().GetSampleCount(); n != 1 {
		t.Errorf("latency observations = %d, want 1 (default/web only)", n)
	}
}

// value returns the value of the series of family name whose labels, rendered as k="v" pairs joined by
// commas in name order, are labels; -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name, labels string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, l.GetName()+"="+`"`+l.GetValue()+`"`)
		}
		slices.Sort(ls)
		if strings.Join(ls, ",") != labels {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	return -1
}

// TestEvictionsCountGrowthSinceFirstReading: the first reading of the evictions is the baseline (entries
// earlier agents removed look like evictions there); later readings add their growth, and a reading that
// errs low never takes the counter back or counts twice.
func TestEvictionsCountGrowthSinceFirstReading(t *testing.T) {
	m := newMetrics(&Agent{})
	for _, ev := range []map[string]int64{
		{maps.ConntrackTableNew: 500, maps.ConntrackTableEstablished: 7},
		{maps.ConntrackTableNew: 620, maps.ConntrackTableEstablished: 7},
		{maps.ConntrackTableNew: 600, maps.ConntrackTableEstablished: 9},
		{maps.ConntrackTableNew: 630, maps.ConntrackTableEstablished: 9},
	} {
		m.observeEvictions(ev)
	}
	for table, want := range map[string]float64{maps.ConntrackTableNew: 130, maps.ConntrackTableEstablished: 2} {
		if got := testutil.ToFloat64(m.ctEvicted.WithLabelValues(table)); got != want {
			t.Errorf("kubedirect_conntrack_evictions_total{table=%q} = %v, want %v", table, got, want)
		}
	}
}
