package agent

import (
	"sort"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus collectors, in a registry of its own (several agents can run in
// one process in tests). The names of the gauges and counters the hand-written exposition had are kept:
// users' dashboards query them.
type metrics struct {
	reg *prometheus.Registry
	// programLatency is the time from the informer event of a Service or EndpointSlice change to the
	// map write that carried it (changes after the first full sync that wrote something).
	programLatency prometheus.Histogram
	// serviceSync is the duration of one Service's translation and map writes.
	serviceSync prometheus.Histogram
	// fullSync is the duration of the full sync that programs every Service at start.
	fullSync prometheus.Histogram
	// startup is the time from the agent's start to each step of its first sync (startupPhase values).
	startup *prometheus.GaugeVec
	// conntrack garbage collection.
	ctScanned, ctExpired prometheus.Counter
	ctGC                 prometheus.Histogram
	// ctEvicted counts LRU evictions by table, from maps.ConntrackEvictions: its first reading is the
	// baseline (removals by earlier agents count as evictions there), ctEvictedBase; only the GC
	// goroutine touches them.
	ctEvicted                     *prometheus.CounterVec
	ctEvictedBase, ctEvictedShown map[string]int64
}

func newMetrics(a *Agent) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		// 1 ms .. 33 s: a queue backed up behind a full map or a slow API server shows in the top buckets
		programLatency: histogram("kubedirect_service_programming_latency_seconds",
			"Time from the informer event of a Service or EndpointSlice change to the BPF map write that carried it.", 0.001),
		serviceSync: histogram("kubedirect_service_sync_duration_seconds",
			"Duration of one Service's translation and map writes.", 0.0001),
		fullSync: histogram("kubedirect_full_sync_duration_seconds",
			"Duration of the full sync that programs every Service when the agent starts.", 0.01),
		startup: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubedirect_startup_seconds",
			Help: "Time from the agent's start to a step of its first sync: datapath_loaded (BPF programs and maps loaded, while the API lists run), informers_synced (the API lists are in), ready (every Service programmed)."},
			[]string{"phase"}),
		ctScanned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubedirect_conntrack_gc_scanned_total",
			Help: "Conntrack entries the garbage collector looked at.",
		}),
		ctExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubedirect_conntrack_gc_expired_total",
			Help: "Expired conntrack entries the garbage collector deleted.",
		}),
		ctGC: histogram("kubedirect_conntrack_gc_duration_seconds",
			"Duration of one conntrack garbage collection pass.", 0.0005),
		ctEvicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubedirect_conntrack_evictions_total",
			Help: "Conntrack entries a full table evicted to make room for a new flow, by table (new: flows not confirmed yet; established).",
		}, []string{"table"}),
		ctEvictedBase: map[string]int64{}, ctEvictedShown: map[string]int64{},
	}
	m.reg.MustRegister(m.programLatency, m.serviceSync, m.fullSync, m.startup, m.ctScanned, m.ctExpired, m.ctGC, m.ctEvicted,
		statusCollector{a}, datapathCollector{a},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// histogram is a histogram of 16 buckets doubling from first (seconds).
func histogram(name, help string, first float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help,
		Buckets: prometheus.ExponentialBuckets(first, 2, 16)})
}

// observeGC records one conntrack garbage collection pass.
func (m *metrics) observeGC(deleted, live int, took time.Duration) {
	m.ctScanned.Add(float64(deleted + live))
	m.ctExpired.Add(float64(deleted))
	m.ctGC.Observe(took.Seconds())
}

// observeEvictions records the evictions maps.ConntrackEvictions counted, as growth since the first
// reading; a reading below what was shown (flows starting during the scan make it err low) adds nothing.
func (m *metrics) observeEvictions(evicted map[string]int64) {
	for table, n := range evicted {
		base, ok := m.ctEvictedBase[table]
		if !ok {
			m.ctEvictedBase[table] = n
			m.ctEvicted.WithLabelValues(table)
			continue
		}
		if d := n - base - m.ctEvictedShown[table]; d > 0 {
			m.ctEvicted.WithLabelValues(table).Add(float64(d))
			m.ctEvictedShown[table] += d
		}
	}
}

// statusCollector exports the /status figures, read in one snapshot per scrape.
type statusCollector struct{ a *Agent }

var statusDescs = struct {
	ready, services, frontends, backends, tunnels, endpoints, skipped, ctEntries, ctCapacity *prometheus.Desc
	syncs, syncErrors, mapWrites, netdev                                                     *prometheus.Desc
}{
	ready:      prometheus.NewDesc("kubedirect_ready", "1 once the first full sync programmed the maps.", nil, nil),
	services:   prometheus.NewDesc("kubedirect_services", "Services programmed.", nil, nil),
	frontends:  prometheus.NewDesc("kubedirect_frontends", "Service frontends (ClusterIP, NodePort, external IP) programmed.", nil, nil),
	backends:   prometheus.NewDesc("kubedirect_backends", "Backend slots programmed.", nil, nil),
	tunnels:    prometheus.NewDesc("kubedirect_tunnels", "Remote pod CIDRs in the tunnel map.", nil, nil),
	endpoints:  prometheus.NewDesc("kubedirect_endpoints", "Local pods in the endpoints map.", nil, nil),
	skipped:    prometheus.NewDesc("kubedirect_services_skipped", "Services the dataplane cannot serve.", nil, nil),
	ctEntries:  prometheus.NewDesc("kubedirect_conntrack_entries", "Live conntrack entries at the last GC.", nil, nil),
	ctCapacity: prometheus.NewDesc("kubedirect_conntrack_capacity", "Conntrack map capacity.", nil, nil),
	syncs:      prometheus.NewDesc("kubedirect_service_syncs_total", "Service programming attempts.", nil, nil),
	syncErrors: prometheus.NewDesc("kubedirect_sync_errors_total", "Failed Service programming attempts.", nil, nil),
	mapWrites:  prometheus.NewDesc("kubedirect_map_writes_total", "BPF map entries written or deleted for Services.", nil, nil),
	netdev: prometheus.NewDesc("kubedirect_netdev_mode", "1 for each NIC the NodePort programs are attached to, with how NodePort traffic is handled there (xdp or tc).",
		[]string{"interface", "mode"}, nil),
}

func (statusCollector) Describe(ch chan<- *prometheus.Desc) {
	d := statusDescs
	for _, x := range []*prometheus.Desc{d.ready, d.services, d.frontends, d.backends, d.tunnels, d.endpoints,
		d.skipped, d.ctEntries, d.ctCapacity, d.syncs, d.syncErrors, d.mapWrites, d.netdev} {
		ch <- x
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.Snapshot()
	d := statusDescs
	gauge := func(desc *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v))
	}
	ready := 0
	if st.Ready {
		ready = 1
	}
	gauge(d.ready, ready)
	gauge(d.services, st.Services)
	gauge(d.frontends, st.Frontends)
	gauge(d.backends, st.Backends)
	gauge(d.tunnels, st.Tunnels)
	gauge(d.endpoints, st.Endpoints)
	gauge(d.skipped, len(st.Skipped))
	gauge(d.ctEntries, st.Conntrack)
	gauge(d.ctCapacity, int(c.a.cfg.MapSizes.Conntrack))
	ch <- prometheus.MustNewConstMetric(d.syncs, prometheus.CounterValue, float64(st.Syncs))
	ch <- prometheus.MustNewConstMetric(d.syncErrors, prometheus.CounterValue, float64(st.SyncErrors))
	ch <- prometheus.MustNewConstMetric(d.mapWrites, prometheus.CounterValue, float64(st.MapWrites))
	for dev, mode := range st.Netdevs {
		ch <- prometheus.MustNewConstMetric(d.netdev, prometheus.GaugeValue, 1, dev, mode)
	}
}

// datapathCollector exports the per-CPU kd_metrics counters, summed over CPUs at each scrape (the
// datapath counts; nothing is copied between scrapes).
type datapathCollector struct{ a *Agent }

// datapathFamily is one pair of packet and byte counters of kd_metrics, by one label.
type datapathFamily struct {
	packets, bytes *prometheus.Desc
	pick           func(maps.Counters) map[string]maps.Metric
}

func newDatapathFamily(prefix, help, label string, pick func(maps.Counters) map[string]maps.Metric) datapathFamily {
	return datapathFamily{
		packets: prometheus.NewDesc(prefix+"_packets_total", help, []string{label}, nil),
		bytes:   prometheus.NewDesc(prefix+"_bytes_total", help+" (bytes)", []string{label}, nil),
		pick:    pick,
	}
}

var datapathFamilies = []datapathFamily{
	newDatapathFamily("kubedirect_datapath", "Packets by datapath verdict.", "verdict",
		func(c maps.Counters) map[string]maps.Metric { return c.Verdicts }),
	newDatapathFamily("kubedirect_datapath_drop", "Dropped packets by reason.", "reason",
		func(c maps.Counters) map[string]maps.Metric { return c.Drops }),
	// Every kd_metrics slot Go has no name for yet, as slot_N.
	newDatapathFamily("kubedirect_datapath_counter", "Datapath counters without a name yet (kd_metrics slot).", "counter",
		func(c maps.Counters) map[string]maps.Metric { return c.Other }),
}

var eventsLostDesc = prometheus.NewDesc("kubedirect_flow_events_lost_total",
	"Flow events the datapath could not put into the full kd_events ring buffer (monitor never sees them).", nil, nil)

func (datapathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- eventsLostDesc
	for _, f := range datapathFamilies {
		ch <- f.packets
		ch <- f.bytes
	}
}

func (c datapathCollector) Collect(ch chan<- prometheus.Metric) {
	read := c.a.readCounters
	if read == nil {
		return
	}
	counters, err := read()
	if err != nil {
		// the scrape shows the datapath series missing; the reason goes to the log
		c.a.log.Warn("read datapath counters", "err", err)
		return
	}
	if counters.Verdicts == nil { // not loaded yet
		return
	}
	ch <- prometheus.MustNewConstMetric(eventsLostDesc, prometheus.CounterValue, float64(counters.EventsLost))
	for _, f := range datapathFamilies {
		m := f.pick(counters)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ch <- prometheus.MustNewConstMetric(f.packets, prometheus.CounterValue, float64(m[k].Packets), k)
			ch <- prometheus.MustNewConstMetric(f.bytes, prometheus.CounterValue, float64(m[k].Bytes), k)
		}
	}
}

// noteChange records the informer event of a change to the Service key, once the first full sync is
// done (before it, the full sync duration covers the changes). The first event of a burst counts: the
// latency is what the oldest unprogrammed change waited.
func (a *Agent) noteChange(key string) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.status.Ready {
		return
	}
	if _, ok := a.changed[key]; !ok {
		a.changed[key] = now
	}
}

// programmed is called when a sync of the Service key ended without error; wrote says whether it wrote
// any map entry. A change that wrote nothing (a label edit, say) is not observed: it would hide the
// latency of the changes that reach the datapath.
func (a *Agent) programmed(key string, wrote bool) {
	a.mu.Lock()
	since, ok := a.changed[key]
	delete(a.changed, key)
	a.mu.Unlock()
	if ok && wrote {
		a.metrics.programLatency.Observe(time.Since(since).Seconds())
	}
}

// forgetChange drops the pending change of a Service that will not be programmed (skipped).
func (a *Agent) forgetChange(key string) {
	a.mu.Lock()
	delete(a.changed, key)
	a.mu.Unlock()
}

// Phases of the agent's start (kubedirect_startup_seconds).
const (
	phaseDatapathLoaded  = "datapath_loaded"
	phaseInformersSynced = "informers_synced"
	phaseReady           = "ready"
)

// startupPhase records that the agent reached phase and returns the time since its start.
func (a *Agent) startupPhase(phase string) time.Duration {
	d := time.Since(a.started)
	a.metrics.startup.WithLabelValues(phase).Set(d.Seconds())
	return d
}

// setReady marks the first full sync done.
func (a *Agent) setReady() {
	a.mu.Lock()
	a.status.Ready = true
	a.mu.Unlock()
	a.startupPhase(phaseReady)
}
