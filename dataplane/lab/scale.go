package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/kubedirect/kubedirect/dataplane/inspect"
	"github.com/kubedirect/kubedirect/provision/observe"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ScaleOptions configure Scale.
type ScaleOptions struct {
	// Lab configures the lab (Name, Subnet, Binary, K8sBinDir, Logger, Nodes); NoAgents, the agents'
	// log level and the conntrack map size are set by Scale.
	Lab Options
	// Services is the number of ClusterIP Services, each with one TCP port. Default 10000.
	Services int
	// EndpointsPerService is the number of ready endpoints of each Service, spread over the nodes at
	// pod addresses nothing answers on (the run sends no traffic). Default 5.
	EndpointsPerService int
	// Changes is the size of the burst of Service changes once every agent converged: half change the
	// Service's port, half one endpoint's address. Default 1000.
	Changes int
	// Timeout bounds each wait (agents converged, burst programmed). Default 20 minutes.
	Timeout time.Duration
	// Keep leaves the lab up after the run (remove it with `kubedirect lab down`).
	Keep bool
}

// ScaleResult is what Scale measured. Durations are wall time on this machine.
type ScaleResult struct {
	Nodes               int `json:"nodes"`
	Services            int `json:"services"`
	EndpointsPerService int `json:"endpointsPerService"`
	Changes             int `json:"changes"`
	// Create is the time to create the Services and EndpointSlices through the API before any agent runs.
	Create time.Duration `json:"create"`
	// StartToReady is the time from starting the agents until every agent answers /readyz;
	// StartToConverged until every agent's /status counts every Service the API server holds.
	StartToReady     time.Duration `json:"startToReady"`
	StartToConverged time.Duration `json:"startToConverged"`
	// BurstWrite is the time to write the burst through the API; BurstToProgrammed the time from the
	// first write until every agent's change-to-programmed histogram counted every change.
	BurstWrite        time.Duration `json:"burstWrite"`
	BurstToProgrammed time.Duration `json:"burstToProgrammed"`
	// ChangeToProgrammed is the agents' kubedirect_service_programming_latency_seconds over the burst:
	// quantiles of all nodes' observations together and the worst node's p99.
	ChangeToProgrammed Latency `json:"changeToProgrammed"`
	// Agents are per-agent process figures (median and maximum over the nodes).
	Agents AgentFigures `json:"agents"`
	// APIServer is the API server's load: after the agents converged (the initial lists and the
	// watches) and over the burst.
	APIServer APIServerFigures `json:"apiServer"`
	// Verified is the number of nodes whose pinned maps equal the desired state computed from the API
	// server after the burst; Differences the first differences found (empty when all match).
	Verified    int      `json:"verified"`
	Differences []string `json:"differences,omitempty"`
}

// Latency is a set of quantiles in seconds, from Prometheus histograms (linear within a bucket).
type Latency struct {
	Count        int     `json:"count"`
	P50          float64 `json:"p50Seconds"`
	P99          float64 `json:"p99Seconds"`
	WorstNodeP99 float64 `json:"worstNodeP99Seconds"`
}

// AgentFigures are memory and CPU of the agent processes.
type AgentFigures struct {
	// RSS after convergence and after the burst, and the high-water mark (VmHWM) at the end, in MiB.
	RSSConvergedMiB  Spread `json:"rssConvergedMiB"`
	RSSAfterBurstMiB Spread `json:"rssAfterBurstMiB"`
	HWMMiB           Spread `json:"hwmMiB"`
	// CPU seconds (user + system) from start to convergence, and over the burst per 1,000 changes.
	CPUInitialSyncSeconds    Spread `json:"cpuInitialSyncSeconds"`
	CPUPer1000ChangesSeconds Spread `json:"cpuPer1000ChangesSeconds"`
}

// Spread is the median and the maximum of a per-node figure.
type Spread struct {
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// APIServerFigures are read from the API server's /metrics.
type APIServerFigures struct {
	// Watches are the WATCH requests the agents hold open once they converged, by resource
	// (apiserver_longrunning_requests{verb="WATCH"}, less those open before the agents started).
	Watches map[string]int `json:"watches"`
	// RSSMiB is the API server's resident memory at the end.
	RSSMiB float64 `json:"rssMiB"`
	// Start and Burst are the phases: the agents' start until convergence, and the burst.
	Start APIServerPhase `json:"start"`
	Burst APIServerPhase `json:"burst"`
}

// APIServerPhase is the API server's work during one phase.
type APIServerPhase struct {
	// Requests by verb (apiserver_request_total), ResponseMiB by verb (apiserver_response_sizes,
	// bodies of non-watch responses).
	Requests    map[string]int     `json:"requests"`
	ResponseMiB map[string]float64 `json:"responseMiB"`
	// WatchEvents and WatchEventMiB are the events sent to watchers, by resource
	// (apiserver_watch_events_total, apiserver_watch_events_sizes).
	WatchEvents   map[string]int     `json:"watchEvents"`
	WatchEventMiB map[string]float64 `json:"watchEventMiB"`
	// CPUSeconds is the API server's CPU time in the phase.
	CPUSeconds float64 `json:"cpuSeconds"`
}

// scalePort is the port every scale Service starts with; a port change moves it to scalePort+1.
const scalePort = 80

// Scale builds a lab of o.Lab.Nodes nodes without pods, creates o.Services ClusterIP Services with
// o.EndpointsPerService endpoints each through the API, starts one agent per node and measures how
// long until every agent holds every Service; then it writes a burst of o.Changes Service changes and
// measures how long until every agent programmed all of them, with the agents' change-to-programmed
// histograms, their memory and CPU, and the API server's load. Finally every node's pinned maps are
// compared with the desired state from the API server: a node that missed a change is a difference.
func Scale(ctx context.Context, o ScaleOptions) (*ScaleResult, error) {
	if o.Services == 0 {
		o.Services = 10000
	}
	if o.EndpointsPerService == 0 {
		o.EndpointsPerService = 5
	}
	if o.Changes == 0 {
		o.Changes = 1000
	}
	if o.Changes > o.Services {
		return nil, fmt.Errorf("%d changes of %d Services: at most one change per Service", o.Changes, o.Services)
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Minute
	}
	lo := o.Lab
	if lo.Nodes == 0 {
		lo.Nodes = 50
	}
	// nodes are .11.. of the underlay and the client is .100
	if lo.Nodes > 89 {
		return nil, fmt.Errorf("%d nodes: the lab's underlay /24 holds at most 89", lo.Nodes)
	}
	lo.NoAgents, lo.AgentLogLevel = true, "info"
	if lo.ConntrackMapSize == 0 {
		lo.ConntrackMapSize = 4096 // no traffic: keep 50 nodes' preallocated maps small
	}
	log := lo.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	res := &ScaleResult{Nodes: lo.Nodes, Services: o.Services, EndpointsPerService: o.EndpointsPerService, Changes: o.Changes}
	t0 := time.Now()
	l, err := Up(ctx, lo)
	if err != nil {
		return nil, err
	}
	if o.Keep {
		log.Info("lab kept", "name", l.State.Name, "kubeconfig", l.State.Kubeconfig)
	} else {
		defer func() { _ = l.Down(context.Background()) }()
	}
	log.Info("lab up", "nodes", lo.Nodes, "took", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	if err := l.createScaleServices(ctx, o.Services, o.EndpointsPerService); err != nil {
		return res, err
	}
	res.Create = time.Since(t0)
	log.Info("services created", "services", o.Services, "endpoints", o.Services*o.EndpointsPerService, "took", res.Create.Round(time.Millisecond))
	svcs, err := l.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return res, fmt.Errorf("list services: %w", err)
	}
	want := 0
	for _, s := range svcs.Items {
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			want++
		}
	}

	api0, err := l.scrapeAPIServer(ctx)
	if err != nil {
		return res, err
	}
	t0 = time.Now()
	for _, n := range l.State.Nodes {
		if err := l.StartAgent(ctx, n.Name, ""); err != nil {
			return res, err
		}
	}
	cpu0 := l.agentCPU()
	ready, err := l.waitAgents(ctx, o.Timeout, func(st agentstatus.Status) bool { return st.Ready })
	if err != nil {
		return res, err
	}
	res.StartToReady = ready.Sub(t0)
	log.Info("agents ready", "took", res.StartToReady.Round(time.Millisecond))
	conv, err := l.waitAgents(ctx, o.Timeout, func(st agentstatus.Status) bool { return st.Ready && st.Services >= want })
	if err != nil {
		return res, err
	}
	res.StartToConverged = conv.Sub(t0)
	log.Info("agents converged", "services", want, "took", res.StartToConverged.Round(time.Millisecond))
	cpu1 := l.agentCPU()
	api1, err := l.scrapeAPIServer(ctx)
	if err != nil {
		return res, err
	}
	res.Agents.RSSConvergedMiB = spread(l.agentMemory("VmRSS"))
	res.Agents.CPUInitialSyncSeconds = spread(subEach(cpu1, cpu0))
	watches := func(m metricSet) map[string]float64 {
		return m.byLabelF("apiserver_longrunning_requests", "resource", map[string]string{"verb": "WATCH"})
	}
	res.APIServer.Watches = diffCounts(watches(api0), watches(api1))
	res.APIServer.Start = phase(api0, api1)

	h0, err := l.agentHistograms(ctx)
	if err != nil {
		return res, err
	}
	t0 = time.Now()
	if err := l.scaleBurst(ctx, o.Services, o.Changes, o.EndpointsPerService); err != nil {
		return res, err
	}
	res.BurstWrite = time.Since(t0)
	log.Info("burst written", "changes", o.Changes, "took", res.BurstWrite.Round(time.Millisecond))
	var h1 []histogram
	done, err := l.waitAgentsMetrics(ctx, o.Timeout, func(i int, h histogram) bool { return h.count-h0[i].count >= o.Changes }, &h1)
	if err != nil {
		return res, err
	}
	res.BurstToProgrammed = done.Sub(t0)
	log.Info("burst programmed on every node", "took", res.BurstToProgrammed.Round(time.Millisecond))
	cpu2 := l.agentCPU()
	api2, err := l.scrapeAPIServer(ctx)
	if err != nil {
		return res, err
	}
	res.APIServer.Burst = phase(api1, api2)
	res.APIServer.RSSMiB = api2.sum("process_resident_memory_bytes", nil) / (1 << 20)
	res.Agents.RSSAfterBurstMiB = spread(l.agentMemory("VmRSS"))
	res.Agents.HWMMiB = spread(l.agentMemory("VmHWM"))
	per1000 := subEach(cpu2, cpu1)
	for i := range per1000 {
		per1000[i] *= 1000 / float64(o.Changes)
	}
	res.Agents.CPUPer1000ChangesSeconds = spread(per1000)
	res.ChangeToProgrammed = burstLatency(h0, h1)

	t0 = time.Now()
	verified, diffs, err := l.verifyAll(ctx)
	if err != nil {
		return res, err
	}
	res.Verified = verified
	if len(diffs) > 20 {
		diffs = append(diffs[:20], fmt.Sprintf("... %d more", len(diffs)-20))
	}
	res.Differences = diffs
	log.Info("verified", "nodes", verified, "differences", len(diffs), "took", time.Since(t0).Round(time.Millisecond))
	return res, nil
}

// scaleEndpoint is the address of endpoint j of Service i and the node it is on: the endpoints of
// the Services go round the nodes, at addresses in each node's pod CIDR that no pod has.
func (l *Lab) scaleEndpoint(i, j, perService int) (string, string) {
	k := i*perService + j
	n := l.State.Nodes[k%len(l.State.Nodes)]
	slot := k / len(l.State.Nodes)
	// 10.244.<node>.0/24: hosts .2 .. .254, then wrapping (Services share addresses, as pods serve
	// several Services)
	return fmt.Sprintf("%s%d", strings.TrimSuffix(n.PodCIDR, "0/24"), 2+slot%253), n.Name
}

// scaleSlice is the EndpointSlice of scale Service i; shift moves every address to the next slot
// (an endpoint change).
func (l *Lab) scaleSlice(i, perService, shift int) *discoveryv1.EndpointSlice {
	name := scaleName(i)
	ready, tcp := true, corev1.ProtocolTCP
	port, portName := int32(HTTPPort), PortHTTP
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
		Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "kubedirect-lab"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &tcp}}}
	for j := 0; j < perService; j++ {
		addr, node := l.scaleEndpoint(i, j+shift, perService)
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return sl
}

func scaleName(i int) string { return "scale-" + strconv.Itoa(i) }

// parallel runs fn(0..n-1) on 32 workers and returns the first errors.
func parallel(ctx context.Context, n int, fn func(i int) error) error {
	const workers = 32
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

// createScaleServices creates n Services with perService endpoints each.
func (l *Lab) createScaleServices(ctx context.Context, n, perService int) error {
	return parallel(ctx, n, func(i int) error {
		name := scaleName(i)
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: PortHTTP, Port: scalePort, Protocol: corev1.ProtocolTCP}}}}
		if _, err := l.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create service %s: %w", name, err)
		}
		if _, err := l.Client.DiscoveryV1().EndpointSlices("default").Create(ctx, l.scaleSlice(i, perService, 0), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create endpointslice %s: %w", name, err)
		}
		return nil
	})
}

// scaleBurst changes `changes` Services spread over the n: even ones get port scalePort+1, odd ones
// every endpoint moved to the next address. One request per change.
func (l *Lab) scaleBurst(ctx context.Context, n, changes, perService int) error {
	return parallel(ctx, changes, func(c int) error {
		i := c * n / changes
		if c%2 == 0 {
			patch := fmt.Sprintf(`[{"op":"test","path":"/spec/ports/0/port","value":%d},{"op":"replace","path":"/spec/ports/0/port","value":%d}]`, scalePort, scalePort+1)
			if _, err := l.Client.CoreV1().Services("default").Patch(ctx, scaleName(i), types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				return fmt.Errorf("change port of %s: %w", scaleName(i), err)
			}
			return nil
		}
		eps, err := json.Marshal(l.scaleSlice(i, perService, 1).Endpoints)
		if err != nil {
			return err
		}
		patch := `[{"op":"replace","path":"/endpoints","value":` + string(eps) + `}]`
		if _, err := l.Client.DiscoveryV1().EndpointSlices("default").Patch(ctx, scaleName(i), types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("change endpoints of %s: %w", scaleName(i), err)
		}
		return nil
	})
}

// scaleHTTP is the client for the agents' health servers; many agents answer slowly while they sync.
var scaleHTTP = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2}}

// waitAgents polls every agent's /status until ok holds for all of them and returns when that was
// first seen. An agent that exits fails the wait at once.
func (l *Lab) waitAgents(ctx context.Context, timeout time.Duration, ok func(agentstatus.Status) bool) (time.Time, error) {
	return l.pollAgents(ctx, timeout, func(ctx context.Context, i int, n Node) (bool, error) {
		var st agentstatus.Status
		if err := getJSON(ctx, l.AgentURL(n.Name)+agentstatus.Path, &st); err != nil {
			return false, nil // not listening yet
		}
		return ok(st), nil
	})
}

// waitAgentsMetrics polls every agent's change-to-programmed histogram until ok holds for all of
// them; last receives the histograms that satisfied it.
func (l *Lab) waitAgentsMetrics(ctx context.Context, timeout time.Duration, ok func(int, histogram) bool, last *[]histogram) (time.Time, error) {
	hs := make([]histogram, len(l.State.Nodes))
	t, err := l.pollAgents(ctx, timeout, func(ctx context.Context, i int, n Node) (bool, error) {
		h, err := l.agentHistogram(ctx, n.Name)
		if err != nil {
			return false, nil
		}
		hs[i] = h
		return ok(i, h), nil
	})
	*last = hs
	return t, err
}

// pollAgents calls check for every node not yet done, concurrently, about every 200 ms, until all are
// done; it returns the time of the round that saw the last one done.
func (l *Lab) pollAgents(ctx context.Context, timeout time.Duration, check func(context.Context, int, Node) (bool, error)) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	done := make([]bool, len(l.State.Nodes))
	for {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		for i, n := range l.State.Nodes {
			if done[i] {
				continue
			}
			if !ours(n.AgentPid, l.State.Name) {
				return time.Time{}, fmt.Errorf("agent on %s exited (log %s, its end:\n%s)", n.Name, l.Log("agent-"+n.Name), l.LogTail("agent-"+n.Name, 20))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ok, err := check(ctx, i, n)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				done[i] = ok
			}()
		}
		wg.Wait()
		now := time.Now()
		if err := errors.Join(errs...); err != nil {
			return now, err
		}
		var missing []string
		for i, d := range done {
			if !d {
				missing = append(missing, l.State.Nodes[i].Name)
			}
		}
		if len(missing) == 0 {
			return now, nil
		}
		if now.After(deadline) {
			return now, fmt.Errorf("%d agents not there after %s: %s", len(missing), timeout, strings.Join(missing, " "))
		}
		select {
		case <-ctx.Done():
			return now, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := scaleHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// agentHistograms reads every agent's change-to-programmed histogram.
func (l *Lab) agentHistograms(ctx context.Context) ([]histogram, error) {
	hs := make([]histogram, len(l.State.Nodes))
	for i, n := range l.State.Nodes {
		h, err := l.agentHistogram(ctx, n.Name)
		if err != nil {
			return nil, err
		}
		hs[i] = h
	}
	return hs, nil
}

// programLatencyMetric is the agent's change-to-programmed histogram (dataplane/agent/metrics.go).
const programLatencyMetric = "kubedirect_service_programming_latency_seconds"

func (l *Lab) agentHistogram(ctx context.Context, node string) (histogram, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.AgentURL(node)+"/metrics", nil)
	if err != nil {
		return histogram{}, err
	}
	resp, err := scaleHTTP.Do(req)
	if err != nil {
		return histogram{}, fmt.Errorf("scrape agent on %s: %w", node, err)
	}
	defer resp.Body.Close()
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return histogram{}, fmt.Errorf("scrape agent on %s: %w", node, err)
	}
	h, ok := m.histogram(programLatencyMetric)
	if !ok {
		return histogram{}, fmt.Errorf("agent on %s has no %s", node, programLatencyMetric)
	}
	return h, nil
}

// burstLatency is the quantiles of the observations between h0 and h1 (per node, same order).
func burstLatency(h0, h1 []histogram) Latency {
	var all histogram
	var lat Latency
	for i := range h1 {
		d := h1[i].sub(h0[i])
		all = all.add(d)
		lat.WorstNodeP99 = max(lat.WorstNodeP99, d.quantile(0.99))
	}
	lat.Count, lat.P50, lat.P99 = all.count, all.quantile(0.5), all.quantile(0.99)
	return lat
}

// agentCPU is every agent's CPU time so far (user + system, seconds), in node order.
func (l *Lab) agentCPU() []float64 {
	out := make([]float64, len(l.State.Nodes))
	for i, n := range l.State.Nodes {
		out[i] = procCPU(n.AgentPid)
	}
	return out
}

// agentMemory is every agent's field (VmRSS, VmHWM) of /proc/<pid>/status in MiB, in node order.
func (l *Lab) agentMemory(field string) []float64 {
	out := make([]float64, len(l.State.Nodes))
	for i, n := range l.State.Nodes {
		out[i] = procStatusKiB(n.AgentPid, field) / 1024
	}
	return out
}

// procCPU is a process's utime + stime in seconds (the kernel's USER_HZ is 100 on Linux).
func procCPU(pid int) float64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// fields after the command, which is in parentheses and may hold spaces
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// procStatusKiB is a "kB" field of /proc/<pid>/status.
func procStatusKiB(pid int, field string) float64 {
	return procStatusFields(pid)(field)
}

// procStatusFields reads /proc/<pid>/status once and returns its "kB" fields by name (0 when absent),
// so that fields read together come from one moment.
func procStatusFields(pid int) func(field string) float64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return func(string) float64 { return 0 }
	}
	return func(field string) float64 { return statusKiB(string(data), field) }
}

func statusKiB(data, field string) float64 {
	for _, line := range strings.Split(data, "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				v, _ := strconv.ParseFloat(f[0], 64)
				return v
			}
		}
	}
	return 0
}

func subEach(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}

func spread(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return Spread{Median: s[len(s)/2], Max: s[len(s)-1]}
}

// scrapeAPIServer reads the API server's /metrics as the lab's admin.
func (l *Lab) scrapeAPIServer(ctx context.Context) (metricSet, error) {
	body, err := l.Client.Discovery().RESTClient().Get().AbsPath("/metrics").Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("scrape API server: %w", err)
	}
	defer body.Close()
	m, err := parseMetrics(body)
	if err != nil {
		return nil, fmt.Errorf("scrape API server: %w", err)
	}
	return m, nil
}

// phase is the API server's work between two scrapes.
func phase(a, b metricSet) APIServerPhase {
	resource := func(m metricSet, name string) map[string]float64 {
		// the label is "resource" on current API servers, "kind" on older ones
		out := m.byLabelF(name, "resource", nil)
		if len(out) == 0 {
			out = m.byLabelF(name, "kind", nil)
		}
		return out
	}
	diffMiB := func(x, y map[string]float64) map[string]float64 {
		out := map[string]float64{}
		for k, v := range y {
			if d := (v - x[k]) / (1 << 20); d != 0 {
				out[k] = d
			}
		}
		return out
	}
	return APIServerPhase{
		Requests:      diffCounts(a.byLabelF("apiserver_request_total", "verb", nil), b.byLabelF("apiserver_request_total", "verb", nil)),
		ResponseMiB:   diffMiB(a.byLabelF("apiserver_response_sizes_sum", "verb", nil), b.byLabelF("apiserver_response_sizes_sum", "verb", nil)),
		WatchEvents:   diffCounts(resource(a, "apiserver_watch_events_total"), resource(b, "apiserver_watch_events_total")),
		WatchEventMiB: diffMiB(resource(a, "apiserver_watch_events_sizes_sum"), resource(b, "apiserver_watch_events_sizes_sum")),
		CPUSeconds:    b.sum("process_cpu_seconds_total", nil) - a.sum("process_cpu_seconds_total", nil),
	}
}

// diffCounts is y - x by key, as whole numbers, leaving out keys that did not change.
func diffCounts(x, y map[string]float64) map[string]int {
	out := map[string]int{}
	for k, v := range y {
		if d := int(v - x[k]); d != 0 {
			out[k] = d
		}
	}
	return out
}

// verifyAll compares every node's pinned maps with the desired state computed from the API server
// (as `kubedirect verify` does on a cluster) and returns the number of nodes that match and the
// differences of the others.
func (l *Lab) verifyAll(ctx context.Context) (int, []string, error) {
	c, err := observe.ListCluster(ctx, l.Client)
	if err != nil {
		return 0, nil, err
	}
	clean := 0
	var diffs []string
	for _, n := range l.State.Nodes {
		d, err := inspect.Collect(ctx, n.PinDir, l.AgentURL(n.Name)+agentstatus.Path, n.Name)
		if err != nil {
			return clean, diffs, fmt.Errorf("read maps of %s: %w", n.Name, err)
		}
		want, err := c.Desired(n.Name, d.Config.Mode)
		if err != nil {
			return clean, diffs, fmt.Errorf("desired state of %s: %w", n.Name, err)
		}
		got := c.Diff(want, d)
		if len(got) == 0 {
			clean++
		}
		for _, x := range got {
			diffs = append(diffs, x.String())
		}
	}
	return clean, diffs, nil
}

// Table renders r for people.
func (r *ScaleResult) Table() string {
	var b strings.Builder
	sec := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s" }
	ms := func(s float64) string { return strconv.FormatFloat(s*1000, 'f', 0, 64) + " ms" }
	mib := func(s Spread) string { return fmt.Sprintf("%.0f / %.0f MiB", s.Median, s.Max) }
	cpu := func(s Spread) string { return fmt.Sprintf("%.1f / %.1f s", s.Median, s.Max) }
	row := func(k, v string) { fmt.Fprintf(&b, "%-46s %s\n", k, v) }
	row("nodes / services / endpoints / changes", fmt.Sprintf("%d / %d / %d / %d", r.Nodes, r.Services, r.Services*r.EndpointsPerService, r.Changes))
	row("create through the API", sec(r.Create))
	row("agents start to all ready", sec(r.StartToReady))
	row("agents start to all holding every Service", sec(r.StartToConverged))
	row("burst written through the API", sec(r.BurstWrite))
	row("burst to programmed on every node", sec(r.BurstToProgrammed))
	row("change to programmed p50 / p99 (all nodes)", ms(r.ChangeToProgrammed.P50)+" / "+ms(r.ChangeToProgrammed.P99))
	row("change to programmed worst node p99", ms(r.ChangeToProgrammed.WorstNodeP99))
	row("agent RSS converged (median / max)", mib(r.Agents.RSSConvergedMiB))
	row("agent RSS after burst (median / max)", mib(r.Agents.RSSAfterBurstMiB))
	row("agent VmHWM (median / max)", mib(r.Agents.HWMMiB))
	row("agent CPU initial sync (median / max)", cpu(r.Agents.CPUInitialSyncSeconds))
	row("agent CPU per 1,000 changes (median / max)", cpu(r.Agents.CPUPer1000ChangesSeconds))
	row("API server open watches", sortedMap(r.APIServer.Watches, "%d"))
	row("API server RSS", fmt.Sprintf("%.0f MiB", r.APIServer.RSSMiB))
	for _, p := range []struct {
		name string
		ph   APIServerPhase
	}{{"start", r.APIServer.Start}, {"burst", r.APIServer.Burst}} {
		row("API server "+p.name+": requests by verb", sortedMap(p.ph.Requests, "%d"))
		row("API server "+p.name+": response MiB by verb", sortedMap(p.ph.ResponseMiB, "%.1f"))
		row("API server "+p.name+": watch events", sortedMap(p.ph.WatchEvents, "%d"))
		row("API server "+p.name+": watch event MiB", sortedMap(p.ph.WatchEventMiB, "%.1f"))
		row("API server "+p.name+": CPU", fmt.Sprintf("%.1f s", p.ph.CPUSeconds))
	}
	row("nodes whose maps equal the desired state", fmt.Sprintf("%d of %d", r.Verified, r.Nodes))
	for _, d := range r.Differences {
		row("", d)
	}
	return b.String()
}

// sortedMap renders m as "k=v" pairs sorted by key (format renders a value).
func sortedMap[V int | float64](m map[string]V, format string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+fmt.Sprintf(format, m[k]))
	}
	return strings.Join(parts, " ")
}
