package lab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Metrics of the agent that agentCost reads (the agent's metrics.go defines them).
const (
	metricStartup         = "kubedirect_startup_seconds"
	metricFullSync        = "kubedirect_full_sync_duration_seconds"
	metricProgramLatency  = "kubedirect_service_programming_latency_seconds"
	startupInformers      = "informers_synced"
	startupReady          = "ready"
	changeWorkers         = 8
	changeProgramDeadline = 5 * time.Minute
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ, 100 on every Linux architecture
// this project runs on (the kernel's ABI, whatever its internal HZ).
const userHZ = 100

// agentCost reads what node's agent reports of its start and, after n filler Services (of eps endpoints
// each) had one endpoint address replaced through the API, the CPU time the agent spent until it
// programmed them all, and its peak memory.
func (l *Lab) agentCost(ctx context.Context, node string, n, eps int) (*AgentCost, error) {
	nd, err := l.Node(node)
	if err != nil {
		return nil, err
	}
	fams, err := l.scrapeAgent(ctx, node)
	if err != nil {
		return nil, err
	}
	c := &AgentCost{
		InformersSynced: seconds(gaugeWith(fams, metricStartup, "phase", startupInformers)),
		StartToReady:    seconds(gaugeWith(fams, metricStartup, "phase", startupReady)),
	}
	if f := fams[metricFullSync]; f != nil && len(f.Metric) > 0 {
		c.Programming = seconds(f.Metric[0].GetHistogram().GetSampleSum())
	}
	programmed := func(fams map[string]*dto.MetricFamily) uint64 {
		if f := fams[metricProgramLatency]; f != nil && len(f.Metric) > 0 {
			return f.Metric[0].GetHistogram().GetSampleCount()
		}
		return 0
	}
	before := programmed(fams)
	cpu0, err := procCPU(nd.AgentPid)
	if err != nil {
		return nil, err
	}
	if err := l.changeFillers(ctx, n, eps); err != nil {
		return nil, err
	}
	var last uint64
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, changeProgramDeadline, true, func(ctx context.Context) (bool, error) {
		fams, err := l.scrapeAgent(ctx, node)
		if err != nil {
			return false, nil
		}
		last = programmed(fams)
		return last-before >= uint64(n), nil
	}); err != nil {
		return nil, fmt.Errorf("agent on %s programmed %d of %d changes: %w", node, last-before, n, err)
	}
	cpu1, err := procCPU(nd.AgentPid)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		c.CPUPer1000Changes = (cpu1 - cpu0) * 1000 / time.Duration(n)
	}
	if c.MaxRSSBytes, err = procHWM(nd.AgentPid); err != nil {
		return nil, err
	}
	return c, nil
}

// changeFillers replaces the last endpoint address of the filler Services 1..n (a pod replaced by one
// at a new address), concurrently.
func (l *Lab) changeFillers(ctx context.Context, n, eps int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, changeWorkers)
	for w := range changeWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slices := l.Client.DiscoveryV1().EndpointSlices("default")
			for {
				i := int(next.Add(1))
				if i > n || ctx.Err() != nil {
					return
				}
				name := "filler-" + strconv.Itoa(i)
				sl, err := slices.Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					errs[w] = fmt.Errorf("get slice %s: %w", name, err)
					return
				}
				// beyond every address createServices gave out
				sl.Endpoints[len(sl.Endpoints)-1].Addresses = []string{fillerEndpoint(n*eps + i).String()}
				if _, err := slices.Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
					errs[w] = fmt.Errorf("update slice %s: %w", name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// scrapeAgent GETs node's agent /metrics and parses it.
func (l *Lab) scrapeAgent(ctx context.Context, node string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.AgentURL(node)+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape agent on %s: %w", node, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse metrics of agent on %s: %w", node, err)
	}
	return fams, nil
}

// gaugeWith returns the value of gauge name whose label is value (0 without one).
func gaugeWith(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	for _, m := range f.Metric {
		for _, lp := range m.Label {
			if lp.GetName() == label && lp.GetValue() == value {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// procCPU returns the user + system CPU time of process pid (/proc/<pid>/stat).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read cpu time: %w", err)
	}
	// the fields after the command name, which is in parentheses and may hold spaces; utime and stime
	// are fields 14 and 15 of the line, 12 and 13 after the name
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("read cpu time: short /proc/%d/stat", pid)
	}
	var ticks uint64
	for _, v := range f[11:13] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read cpu time: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// procHWM returns the peak resident memory of process pid (VmHWM in /proc/<pid>/status).
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read peak memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read peak memory: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("read peak memory: no VmHWM in /proc/%d/status", pid)
}
