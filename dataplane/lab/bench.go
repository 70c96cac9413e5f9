package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/echo"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Systems compared by Bench.
const (
	SystemKubedirect        = "kubedirect"
	SystemKubeProxyIPTables = "kube-proxy-iptables"
	SystemKubeProxyNFTables = "kube-proxy-nftables"
)

// BenchOptions configure Bench.
type BenchOptions struct {
	// Lab configures the lab (Name, Subnet, Binary, K8sBinDir, Logger); NoAgents and Nodes are set by Bench.
	Lab Options
	// Services is the number of ClusterIP Services programmed besides the measured NodePort. Default 10000.
	Services int
	// EndpointsPerService is the number of endpoints of each of those Services: the backend pod and
	// addresses that never receive traffic. Default 5 (10,000 Services carry 50,000 endpoints).
	EndpointsPerService int
	// Duration of each load run and Workers, the concurrent clients. Defaults 5s and 8.
	Duration time.Duration
	Workers  int
	// Probe is what one measured connection does: "http" (default) connects, makes one request to the
	// echo and closes; "connect" completes the TCP handshake through the NodePort to nginx with plain
	// system calls and resets at once, so neither client nor backend costs much next to the datapath's
	// per-connection work; "wrk" is the C load generator wrk (one request per connection,
	// Connection: close) against nginx, so that neither the load generator nor the backend is the
	// bottleneck.
	Probe string
	// Backend is where the measured NodePort's backend runs: "remote" (default; node-2, so traffic
	// crosses the underlay: kube-proxy routes it natively, kubedirect through its tunnel) or "local"
	// (node-1, the node whose NodePort the client uses).
	Backend string
	// Systems to measure, in order. Default: kube-proxy iptables, kube-proxy nftables, kubedirect.
	Systems []string
}

// BenchResult is one system's numbers.
type BenchResult struct {
	System string `json:"system"`
	// ConnsPerSec are completed new connections (connect, one HTTP request, close) per second.
	ConnsPerSec float64 `json:"connsPerSec"`
	// P50 and P99 are the latencies of one such connection.
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	// Errors counts failed connections during the load run.
	Errors int `json:"errors"`
	// CPUPerConn is the CPU time the load run's client, backend (nginx) and softirq threads spent
	// per completed connection (see cpuMeter): what a connection costs end to end, a figure that a
	// machine shared with other work distorts less than ConnsPerSec.
	CPUPerConn time.Duration `json:"cpuPerConn,omitempty"`
	// CreateToFirst is the time from creating a Service (with Services present) to its first
	// successful connection through its NodePort.
	CreateToFirst time.Duration `json:"createToFirst"`
	// InitialSync is the time from starting the system (Services present) to the first connection
	// through a NodePort created right after the start.
	InitialSync time.Duration `json:"initialSync"`
	// Agent is what node-1's kubedirect agent reports of its start, its memory and its CPU (kubedirect
	// only).
	Agent *AgentCost `json:"agent,omitempty"`
}

// AgentCost is what one kubedirect agent costs: the steps of its start as its own metric
// (kubedirect_startup_seconds, kubedirect_full_sync_duration_seconds) reports them, its memory and the
// CPU it spends on Service changes (from /proc).
type AgentCost struct {
	// DatapathLoaded is the time from the agent's start to its BPF programs and maps loaded (the API
	// lists run meanwhile).
	DatapathLoaded time.Duration `json:"datapathLoaded"`
	// InformersSynced is the time from the agent's start to its informers' first list (the API list).
	InformersSynced time.Duration `json:"informersSynced"`
	// Programming is the agent's initial sync: every Service translated and written to the maps.
	Programming time.Duration `json:"programming"`
	// StartToReady is the time from the agent's start to ready.
	StartToReady time.Duration `json:"startToReady"`
	// HeapInuseAfterSyncBytes is the Go heap in use (go_memstats_heap_inuse_bytes) right after the
	// initial sync: the informer caches and the programmer's state.
	HeapInuseAfterSyncBytes int64 `json:"heapInuseAfterSyncBytes"`
	// Memory is the agent's resident memory after the initial sync and the changes.
	Memory AgentMemory `json:"memory"`
	// CPUPer1000Changes is the agent's CPU time (user + system) for 1,000 Service changes made through
	// the API (one endpoint address of each of 1,000 Services replaced), until all are programmed.
	CPUPer1000Changes time.Duration `json:"cpuPer1000Changes"`
}

// AgentMemory is a process's resident memory as /proc/<pid>/status reports it, in bytes. RSS = Anon +
// File (+ shmem): Anon is the agent's own data (Go heap, stacks), File the pages of its executable it
// touched (shared with every process of the same binary, reclaimable), HWM the peak of RSS.
type AgentMemory struct {
	RSSBytes     int64 `json:"vmRSSBytes"`
	AnonBytes    int64 `json:"rssAnonBytes"`
	FileBytes    int64 `json:"rssFileBytes"`
	PeakRSSBytes int64 `json:"vmHWMBytes"`
}

// Bench builds one 2-node lab, programs opts.Services ClusterIP Services, and measures the systems one
// after the other on the same topology: new connections per second and their p50/p99 latency from the
// outside client through node-1's NodePort to an echo pod on node-1, and the time from creating a
// NodePort Service to its first successful connection. kube-proxy runs in each node's namespace and is
// cleaned up (--cleanup) before the next system starts; kubedirect's agents run last.
func Bench(ctx context.Context, o BenchOptions) ([]BenchResult, error) {
	if o.Services == 0 {
		o.Services = 10000
	}
	if o.EndpointsPerService <= 0 {
		o.EndpointsPerService = 5
	}
	if o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.Workers == 0 {
		o.Workers = 8
	}
	switch o.Probe {
	case "":
		o.Probe = ProbeHTTP
	case ProbeHTTP, ProbeConnect, ProbeWRK:
	default:
		return nil, fmt.Errorf("unknown probe %q (want %s, %s or %s)", o.Probe, ProbeHTTP, ProbeConnect, ProbeWRK)
	}
	backendNode := map[string]string{"": "node-2", BackendRemote: "node-2", BackendLocal: "node-1"}[o.Backend]
	if backendNode == "" {
		return nil, fmt.Errorf("unknown backend %q (want %s or %s)", o.Backend, BackendRemote, BackendLocal)
	}
	if len(o.Systems) == 0 {
		o.Systems = []string{SystemKubeProxyIPTables, SystemKubeProxyNFTables, SystemKubedirect}
	}
	log := o.Lab.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	lo := o.Lab
	lo.NoAgents, lo.Nodes = true, 2
	l, err := Up(ctx, lo)
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Down(context.Background()) }()
	pod, err := l.AddPod(ctx, backendNode, "bench")
	if err != nil {
		return nil, err
	}
	if o.Probe == ProbeWRK || o.Probe == ProbeConnect {
		if err := l.StartNginx(ctx, pod); err != nil {
			return nil, err
		}
	}
	// kube-proxy leaves pod routing to the network; the lab's nodes share one bridge, so native routes
	// between the pod CIDRs carry its traffic to a remote backend. kubedirect's agents bring their
	// own tunnel, and the routes go before they start.
	if err := l.podRoutes(ctx, "replace"); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := l.createServices(ctx, o.Services, o.EndpointsPerService, pod); err != nil {
		return nil, err
	}
	log.Info("services created", "count", o.Services, "endpointsPerService", o.EndpointsPerService, "took", time.Since(start).Round(time.Millisecond))

	var results []BenchResult
	for i, sys := range o.Systems {
		res := BenchResult{System: sys}
		sysStart := time.Now()
		switch sys {
		case SystemKubeProxyIPTables, SystemKubeProxyNFTables:
			mode := map[string]string{SystemKubeProxyIPTables: "iptables", SystemKubeProxyNFTables: "nftables"}[sys]
			if err := l.StartKubeProxy(ctx, "node-1", mode); err != nil {
				return results, err
			}
		case SystemKubedirect:
			if err := l.podRoutes(ctx, "del"); err != nil {
				return results, err
			}
			if err := l.StartAgents(ctx, "tunnel"); err != nil {
				return results, err
			}
		default:
			return results, fmt.Errorf("unknown system %q", sys)
		}
		// the first NodePort answers once the system programmed everything present (initial sync);
		// then a new NodePort Service, created with the others present: time to its first connection
		if _, err := l.benchService(ctx, "warm-"+strconv.Itoa(i), pod); err != nil {
			return results, fmt.Errorf("%s initial sync: %w", sys, err)
		}
		res.InitialSync = time.Since(sysStart)
		log.Info("initial sync", "system", sys, "took", res.InitialSync.Round(time.Millisecond))
		t0 := time.Now()
		addr, err := l.benchService(ctx, "bench-"+strconv.Itoa(i), pod)
		if err != nil {
			return results, fmt.Errorf("%s: %w", sys, err)
		}
		res.CreateToFirst = time.Since(t0)
		log.Info("first connection", "system", sys, "after", res.CreateToFirst.Round(time.Millisecond))
		// nginx's NodePort first (kube-proxy may take seconds to program it): the meter counts
		// only the load run
		var web string
		meter := cpuMeter{}
		if o.Probe == ProbeWRK || o.Probe == ProbeConnect {
			if web, err = l.nginxNodePort(ctx, "web-"+strconv.Itoa(i), pod); err != nil {
				return results, fmt.Errorf("%s: %w", sys, err)
			}
			meter.backend = l.State.Pids["nginx-"+pod.Name]
		}
		cpu0 := meter.total()
		switch o.Probe {
		case ProbeWRK:
			err = runWRK(ctx, l.State.ClientNS, "http://"+web+"/", o.Workers, o.Duration, &res)
		case ProbeConnect:
			// nginx, not the Go echo, accepts the connections, so the backend's accept loop is not
			// what limits the rate.
			err = load(ctx, l.State.ClientNS, web, o.Probe, o.Workers, o.Duration, &res)
		default:
			err = load(ctx, l.State.ClientNS, addr, o.Probe, o.Workers, o.Duration, &res)
		}
		if err != nil {
			return results, fmt.Errorf("%s: %w", sys, err)
		}
		if n := res.ConnsPerSec * o.Duration.Seconds(); n > 0 {
			res.CPUPerConn = time.Duration(float64(meter.total()-cpu0) / n)
		}
		log.Info("load", "system", sys, "conns/s", int(res.ConnsPerSec), "p50", res.P50, "p99", res.P99, "errors", res.Errors,
			"cpuPerConn", res.CPUPerConn)
		if sys == SystemKubedirect {
			if res.Agent, err = l.agentCost(ctx, "node-1", min(1000, o.Services)); err != nil {
				return results, fmt.Errorf("%s: %w", sys, err)
			}
			log.Info("agent", "datapathLoaded", res.Agent.DatapathLoaded, "informersSynced", res.Agent.InformersSynced,
				"programming", res.Agent.Programming, "startToReady", res.Agent.StartToReady, "memory", res.Agent.Memory,
				"heapInuseAfterSync", res.Agent.HeapInuseAfterSyncBytes, "cpuPer1000Changes", res.Agent.CPUPer1000Changes)
		}
		results = append(results, res)
		if sys != SystemKubedirect {
			if err := l.StopKubeProxy(ctx, "node-1"); err != nil {
				return results, err
			}
		}
	}
	if o.Probe == ProbeWRK && backendNode != "node-1" {
		// the baseline: plain pod to pod across the same two nodes (kubedirect's tunnel, no Service)
		res, err := l.podToPodWRK(ctx, pod, o.Workers, o.Duration)
		if err != nil {
			return results, err
		}
		log.Info("load", "system", res.System, "conns/s", int(res.ConnsPerSec), "p50", res.P50, "p99", res.P99, "errors", res.Errors)
		results = append(results, res)
	}
	return results, nil
}

// Where the measured NodePort's backend runs (BenchOptions.Backend).
const (
	BackendRemote = "remote"
	BackendLocal  = "local"
)

// SystemPodToPod is the baseline row of a wrk benchmark with a remote backend: a client pod on node-1
// to the nginx pod on node-2, no Service.
const SystemPodToPod = "pod-to-pod"

// podRoutes adds ("replace") or removes ("del") a route on every node to every other node's pod CIDR
// via that node's address.
func (l *Lab) podRoutes(ctx context.Context, op string) error {
	for _, n := range l.State.Nodes {
		if op != "del" {
			if err := run(ctx, "ip", "netns", "exec", n.NetNS, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
				return err
			}
		}
		for _, o := range l.State.Nodes {
			if o.Name == n.Name {
				continue
			}
			if err := ip(ctx, "-n", n.NetNS, "route", op, o.PodCIDR, "via", o.IP); err != nil {
				return fmt.Errorf("route %s on %s: %w", op, n.Name, err)
			}
		}
	}
	return nil
}

// nginxNodePort creates NodePort Service name to nginx in pod, waits until node-1's NodePort answers
// the outside client and returns that address.
func (l *Lab) nginxNodePort(ctx context.Context, name string, pod Pod) (string, error) {
	tcp := corev1.ProtocolTCP
	port, portName := int32(NginxPort), "web"
	svc, err := l.CreateService(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Name: portName, Port: 80, Protocol: tcp}}}})
	if err != nil {
		return "", err
	}
	if err := l.createOneEndpointSlice(ctx, name, portName, port, pod); err != nil {
		return "", err
	}
	n1, _ := l.Node("node-1")
	addr := net.JoinHostPort(n1.IP, strconv.Itoa(int(svc.Spec.Ports[0].NodePort)))
	return addr, waitWRK(ctx, l.State.ClientNS, "http://"+addr+"/")
}

// waitWRK waits until url answers one wrk request from netns.
func waitWRK(ctx context.Context, netns, url string) error {
	var last error
	if perr := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 300*time.Second, true, func(ctx context.Context) (bool, error) {
		_, last = WRK(ctx, netns, url, 1, 1, time.Second)
		return last == nil, nil
	}); perr != nil {
		return fmt.Errorf("%s never answered: %w", url, last)
	}
	return nil
}

// podToPodWRK runs wrk from a new pod on node-1 straight to nginx in pod.
func (l *Lab) podToPodWRK(ctx context.Context, pod Pod, connections int, d time.Duration) (BenchResult, error) {
	res := BenchResult{System: SystemPodToPod}
	client, err := l.AddPod(ctx, "node-1", "bench-client")
	if err != nil {
		return res, err
	}
	url := fmt.Sprintf("http://%s/", net.JoinHostPort(pod.IP, strconv.Itoa(NginxPort)))
	return res, runWRK(ctx, client.NetNS, url, connections, d, &res)
}

// runWRK waits until url answers from netns, then runs wrk with two threads and connections
// connections for d and fills res.
func runWRK(ctx context.Context, netns, url string, connections int, d time.Duration, res *BenchResult) error {
	if err := waitWRK(ctx, netns, url); err != nil {
		return err
	}
	w, err := WRK(ctx, netns, url, 2, connections, d)
	if err != nil {
		return err
	}
	res.ConnsPerSec, res.P50, res.P99, res.Errors = w.RequestsPerSec, w.P50, w.P99, w.Errors
	return nil
}

// benchService creates a NodePort echo Service with pod as backend and waits until node-1's NodePort
// answers the client; it returns that address.
func (l *Lab) benchService(ctx context.Context, name string, pod Pod) (string, error) {
	created, err := l.CreateService(ctx, EchoService(name, corev1.ServiceTypeNodePort))
	if err != nil {
		return "", err
	}
	if err := l.SetBackends(ctx, "default", name, []Pod{pod}); err != nil {
		return "", err
	}
	var nodePort int
	for _, p := range created.Spec.Ports {
		if p.Name == PortHTTP {
			nodePort = int(p.NodePort)
		}
	}
	n1, _ := l.Node("node-1")
	addr := net.JoinHostPort(n1.IP, strconv.Itoa(nodePort))
	return addr, pollHTTP(ctx, l, addr, 300*time.Second)
}

func pollHTTP(ctx context.Context, l *Lab, addr string, timeout time.Duration) error {
	var err error
	if perr := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		_, err = l.HTTP(ctx, l.State.ClientNS, addr, 200*time.Millisecond)
		return err == nil, nil
	}); perr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("no connection to %s after %s: %w", addr, timeout, err)
	}
	return nil
}

// createOneEndpointSlice creates the EndpointSlice of Service default/name with pod as its first ready
// endpoint on TCP port (named portName), then the addresses extra, said to run on pod's node.
func (l *Lab) createOneEndpointSlice(ctx context.Context, name, portName string, port int32, pod Pod, extra ...netip.Addr) error {
	ready, node, tcp := true, pod.Node, corev1.ProtocolTCP
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "kubedirect-lab"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &tcp}}}
	for _, a := range append([]string{pod.IP}, addrStrings(extra)...) {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	if _, err := l.Client.DiscoveryV1().EndpointSlices("default").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create slice %s: %w", name, err)
	}
	return nil
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// fillerEndpoints is where the endpoints of the filler Services that are not the backend pod live: the
// shared address space of RFC 6598, which nothing in the lab routes; the bench never sends to them.
var fillerEndpoints = netip.MustParsePrefix("100.64.0.0/10")

// fillerEndpoint returns the i-th address of fillerEndpoints.
func fillerEndpoint(i int) netip.Addr {
	b := fillerEndpoints.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + uint32(i)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// createServices creates n ClusterIP Services with eps endpoints each, concurrently: pod, then eps-1
// addresses of fillerEndpoints.
func (l *Lab) createServices(ctx context.Context, n, eps int, pod Pod) error {
	const workers = 48
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	tcp := corev1.ProtocolTCP
	hp, hn := int32(HTTPPort), PortHTTP
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > n || ctx.Err() != nil {
					return
				}
				name := "filler-" + strconv.Itoa(i)
				svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
					Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: hn, Port: 80, Protocol: tcp}}}}
				if _, err := l.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
					errs[w] = fmt.Errorf("create %s: %w", name, err)
					return
				}
				extra := make([]netip.Addr, eps-1)
				for j := range extra {
					extra[j] = fillerEndpoint((i-1)*(eps-1) + j)
				}
				if err := l.createOneEndpointSlice(ctx, name, hn, hp, pod, extra...); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// load runs workers clients in the namespace clientNS for d, each doing new connection + one request +
// close to addr in a loop, and fills res.
func load(ctx context.Context, clientNS, addr, probe string, workers int, d time.Duration, res *BenchResult) error {
	h, err := netns.GetFromName(clientNS)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", clientNS, err)
	}
	defer h.Close()
	var mu sync.Mutex
	var lat []time.Duration
	var errCount int
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine, in clientNS
			if err := netns.Set(h); err != nil {
				mu.Lock()
				errCount++
				mu.Unlock()
				return
			}
			var mine []time.Duration
			fails := 0
			for time.Now().Before(stop) && ctx.Err() == nil {
				t0 := time.Now()
				var err error
				if probe == ProbeConnect {
					err = connectOnly(ctx, addr)
				} else {
					var c *echo.Conn
					if c, err = echo.Dial(ctx, addr); err == nil {
						_, err = c.Get(2 * time.Second)
						c.Close()
					}
				}
				if err != nil {
					fails++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errCount += fails
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(lat) == 0 {
		return fmt.Errorf("no successful connection to %s", addr)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.ConnsPerSec = float64(len(lat)) / d.Seconds()
	res.P50 = lat[len(lat)/2]
	res.P99 = lat[len(lat)*99/100]
	res.Errors = errCount
	return nil
}

// Probes a benchmark connection can make.
const (
	ProbeHTTP    = "http"
	ProbeConnect = "connect"
	ProbeWRK     = "wrk"
)

// connectOnly completes one TCP handshake with addr and closes with a reset, so no TIME_WAIT state
// piles up on the client during a long run.
func connectOnly(ctx context.Context, addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("connect: %q is not an IPv4 address and port", addr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Plain blocking system calls on the worker's own locked thread: socket, connect, close with a
	// zero linger (a reset). Go's net.Dialer would add the netpoller's registration, wake-up and
	// goroutine switches to every connection, a client-side cost the datapaths do not have.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("connect: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return fmt.Errorf("connect: SO_LINGER: %w", err)
	}
	// a blocking connect waits at most SO_SNDTIMEO, then fails with EINPROGRESS
	tv := unix.NsecToTimeval((2 * time.Second).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fmt.Errorf("connect: SO_SNDTIMEO: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return fmt.Errorf("connect %s: %w", addr, err)
	}
	return nil
}

// StartKubeProxy runs the real kube-proxy (from the lab's Kubernetes binaries) in node's namespace in
// mode iptables or nftables, and waits for its healthz.
func (l *Lab) StartKubeProxy(ctx context.Context, node, mode string) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	bin := filepath.Join(l.State.K8sBinDir, "kube-proxy")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("find kube-proxy (hack/build-k8s.sh kube-proxy): %w", err)
	}
	cfg := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %s, qps: 100, burst: 200}
hostnameOverride: %s
mode: %s
clusterCIDR: 10.244.0.0/16
conntrack: {maxPerCore: 0}
healthzBindAddress: %s:10256
metricsBindAddress: 127.0.0.1:10249
`, l.State.Kubeconfig, node, mode, n.IP)
	path := filepath.Join(l.State.Dir, "kube-proxy-"+node+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	if _, err := l.startProc("kube-proxy-"+node, nil, "nsenter", "--net="+nsPath(n.NetNS), "--", bin, "--config", path); err != nil {
		return err
	}
	if err := l.save(); err != nil {
		return err
	}
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 120*time.Second, true, func(context.Context) (bool, error) {
		resp, err := c.Get("http://" + n.IP + ":10256/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("kube-proxy on %s not healthy (log %s)", node, l.Log("kube-proxy-"+node))
	}
	return nil
}

// StopKubeProxy stops kube-proxy on node and removes its rules (kube-proxy --cleanup in the namespace).
func (l *Lab) StopKubeProxy(ctx context.Context, node string) error {
	n, err := l.Node(node)
	if err != nil {
		return err
	}
	stopPid(l.State.Pids["kube-proxy-"+node], l.State.Name, 5*time.Second)
	bin := filepath.Join(l.State.K8sBinDir, "kube-proxy")
	return run(ctx, "nsenter", "--net="+nsPath(n.NetNS), "--", bin, "--cleanup")
}

// Ratio is a/b, 0 when b is 0.
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
