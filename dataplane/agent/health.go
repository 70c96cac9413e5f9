package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// serveHealth starts the HTTP server on config.HealthAddr and returns its stop function.
func (a *Agent) serveHealth(ctx context.Context) func() {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.Snapshot().Ready {
			http.Error(w, "initial sync not done", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc(agentstatus.Path, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.Snapshot())
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(a.metricsText()))
	})
	srv := &http.Server{Addr: a.cfg.HealthAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("health server", "addr", a.cfg.HealthAddr, "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
}

// metricsText renders the Prometheus text exposition of the agent and datapath counters.
func (a *Agent) metricsText() string {
	st := a.Snapshot()
	var b strings.Builder
	gauge := func(name, help string, v int) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	ready := 0
	if st.Ready {
		ready = 1
	}
	gauge("kubedirect_ready", "1 once the first full sync programmed the maps.", ready)
	gauge("kubedirect_services", "Services programmed.", st.Services)
	gauge("kubedirect_frontends", "Service frontends (ClusterIP, NodePort, external IP) programmed.", st.Frontends)
	gauge("kubedirect_backends", "Backend slots programmed.", st.Backends)
	gauge("kubedirect_tunnels", "Remote pod CIDRs in the tunnel map.", st.Tunnels)
	gauge("kubedirect_endpoints", "Local pods in the endpoints map.", st.Endpoints)
	gauge("kubedirect_services_skipped", "Services the dataplane cannot serve.", len(st.Skipped))
	gauge("kubedirect_conntrack_entries", "Live conntrack entries at the last GC.", st.Conntrack)
	gauge("kubedirect_conntrack_capacity", "Conntrack map capacity.", int(a.cfg.MapSizes.Conntrack))
	fmt.Fprintf(&b, "# HELP kubedirect_sync_errors_total Failed Service programming attempts.\n# TYPE kubedirect_sync_errors_total counter\nkubedirect_sync_errors_total %d\n", st.SyncErrors)
	fmt.Fprintf(&b, "# HELP kubedirect_map_writes_total BPF map entries written or deleted for Services.\n# TYPE kubedirect_map_writes_total counter\nkubedirect_map_writes_total %d\n", st.MapWrites)
	if a.dp == nil {
		return b.String()
	}
	c, err := a.dp.Maps.ReadMetrics()
	if err != nil {
		return b.String()
	}
	counter := func(name, help, label string, m map[string]maps.Metric) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "# HELP %s_packets_total %s\n# TYPE %s_packets_total counter\n", name, help, name)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s_packets_total{%s=%q} %d\n", name, label, k, m[k].Packets)
		}
		fmt.Fprintf(&b, "# HELP %s_bytes_total %s (bytes)\n# TYPE %s_bytes_total counter\n", name, help, name)
		for _, k := range keys {
			fmt.Fprintf(&b, "%s_bytes_total{%s=%q} %d\n", name, label, k, m[k].Bytes)
		}
	}
	counter("kubedirect_datapath", "Packets by datapath verdict.", "verdict", c.Verdicts)
	counter("kubedirect_datapath_drop", "Dropped packets by reason.", "reason", c.Drops)
	return b.String()
}
