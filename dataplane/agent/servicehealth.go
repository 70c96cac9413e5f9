package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// serviceHealth answers cloud load balancers' health checks for externalTrafficPolicy Local
// LoadBalancer Services on their healthCheckNodePort, as kube-proxy's service health server does: 200
// while this node has a Ready endpoint of the Service, 503 otherwise, so that load balancers only send
// to nodes that can serve without forwarding. One listener per Service, opened and closed as Services
// come and go; any path answers.
type serviceHealth struct {
	// host is the address the listeners bind ("" binds every address of the node, as kube-proxy does).
	host    string
	healthy func() bool // whether the agent itself is serving (serviceProxyHealthy)
	log     *slog.Logger

	mu   sync.Mutex
	svcs map[string]*hcService // by "namespace/name"
}

type hcService struct {
	namespace, name string
	port            uint16
	srv             *http.Server

	mu         sync.Mutex
	localReady int
}

func newServiceHealth(host string, healthy func() bool, log *slog.Logger) *serviceHealth {
	return &serviceHealth{host: host, healthy: healthy, log: log, svcs: map[string]*hcService{}}
}

// Sync makes the Service key answer on port with localReady local endpoints; port 0 closes its
// listener. An error means the port could not be opened (Sync may be called again to retry).
func (h *serviceHealth) Sync(key string, port uint16, localReady int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.svcs[key]
	if s != nil && s.port != port {
		h.closeLocked(key)
		s = nil
	}
	if port == 0 {
		return nil
	}
	if s == nil {
		ns, name, _ := strings.Cut(key, "/")
		s = &hcService{namespace: ns, name: name, port: port}
		l, err := net.Listen("tcp", net.JoinHostPort(h.host, strconv.Itoa(int(port))))
		if err != nil {
			return fmt.Errorf("open health check port %d of %s: %w", port, key, err)
		}
		s.srv = &http.Server{Handler: h.handler(s), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				h.log.Error("service health check", "service", key, "port", port, "err", err)
			}
		}()
		h.svcs[key] = s
		h.log.Info("service health check opened", "service", key, "port", port)
	}
	s.mu.Lock()
	s.localReady = localReady
	s.mu.Unlock()
	return nil
}

func (h *serviceHealth) closeLocked(key string) {
	s := h.svcs[key]
	if s == nil {
		return
	}
	_ = s.srv.Close()
	delete(h.svcs, key)
	h.log.Info("service health check closed", "service", key, "port", s.port)
}

// Close closes every listener.
func (h *serviceHealth) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range h.svcs {
		h.closeLocked(k)
	}
}

// serviceHealthReply is kube-proxy's answer document.
type serviceHealthReply struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (h *serviceHealth) handler(s *hcService) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		var r serviceHealthReply
		r.Service.Namespace, r.Service.Name = s.namespace, s.name
		s.mu.Lock()
		r.LocalEndpoints = s.localReady
		s.mu.Unlock()
		r.ServiceProxyHealthy = h.healthy()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.LocalEndpoints > 0 && r.ServiceProxyHealthy {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(r)
	})
}

// toBeDeletedTaint is the taint the cluster autoscaler puts on a node it is about to remove.
const toBeDeletedTaint = "ToBeDeletedByClusterAutoscaler"

// nodeEligible tells whether load balancers should still use the node (kube-proxy's /healthz rule): it
// is not being deleted and the cluster autoscaler has not marked it for removal.
func nodeEligible(n *corev1.Node) bool {
	if n == nil {
		return true
	}
	if n.DeletionTimestamp != nil {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Key == toBeDeletedTaint {
			return false
		}
	}
	return true
}

// serveProxyHealth serves kube-proxy's node health endpoint on config.ProxyHealthAddr, which cloud load
// balancers probe for externalTrafficPolicy Cluster Services: /livez answers 200 once the first full
// sync programmed the maps; /healthz also needs the node to be eligible (not being deleted). Returns
// its stop function.
func (a *Agent) serveProxyHealth(ctx context.Context) func() {
	if a.cfg.ProxyHealthAddr == "" || a.cfg.ProxyHealthAddr == "none" {
		return func() {}
	}
	reply := func(w http.ResponseWriter, healthy bool, eligible *bool) {
		now := time.Now().UTC()
		doc := map[string]any{"lastUpdated": a.lastSynced(now, healthy), "currentTime": now}
		if eligible != nil {
			doc["nodeEligible"] = *eligible
			healthy = healthy && *eligible
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if healthy {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(doc)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		eligible := true
		if a.nodeLister != nil {
			n, err := a.nodeLister.Get(a.node)
			eligible = err != nil || nodeEligible(n)
		}
		reply(w, a.Snapshot().Ready, &eligible)
	})
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { reply(w, a.Snapshot().Ready, nil) })
	return a.serveHTTP(ctx, "proxy health server", a.cfg.ProxyHealthAddr, mux)
}

// lastSynced is the time reported as lastUpdated: now while healthy (kube-proxy's compatible meaning),
// else the agent's start.
func (a *Agent) lastSynced(now time.Time, healthy bool) time.Time {
	if healthy {
		return now
	}
	return a.started
}
