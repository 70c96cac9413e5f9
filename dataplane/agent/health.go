package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// healthMux serves /healthz, /readyz, /status and /metrics.
func (a *Agent) healthMux() *http.ServeMux {
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
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}))
	return mux
}

// serveHealth starts the HTTP server on config.HealthAddr and returns its stop function.
func (a *Agent) serveHealth(ctx context.Context) func() {
	return a.serveHTTP(ctx, "health server", a.cfg.HealthAddr, a.healthMux())
}

// serveHTTP serves h on addr until the returned stop function is called, logging a failure to listen
// or serve under name (the agent keeps running: its dataplane does not depend on these endpoints).
func (a *Agent) serveHTTP(ctx context.Context, name, addr string, h http.Handler) func() {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error(name, "addr", addr, "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
}
