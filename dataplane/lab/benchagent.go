package lab

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Metrics of the agent that agentCost reads (the agent's metrics.go defines them).
const (
	metricStartup         = "kubedirect_startup_seconds"
	metricFullSync        = "kubedirect_full_sync_duration_seconds"
	metricHeapInuse       = "go_memstats_heap_inuse_bytes"
	changeWorkers         = 8
	changeProgramDeadline = 5 * time.Minute
	// changedEndpoints is the index in fillerEndpoints of the first address changeFillers gives out:
	// beyond those of 2,000,000 filler endpoints.
	changedEndpoints = 1 << 21
)

// agentCost reads what node's agent reports of its start and, after n filler Services had one endpoint address replaced through the API, the CPU time the agent spent until it
// programmed them all, and its memory.
func (l *Lab) agentCost(ctx context.Context, node string, n int) (*AgentCost, error) {
	nd, err := l.Node(node)
	if err != nil {
		return nil, err
	}
	m, err := l.scrapeAgent(ctx, node)
	if err != nil {
		return nil, err
	}
	c := &AgentCost{
		DatapathLoaded:          seconds(m.sum(metricStartup, map[string]string{"phase": "datapath_loaded"})),
		InformersSynced:         seconds(m.sum(metricStartup, map[string]string{"phase": "informers_synced"})),
		HeapInuseAfterSyncBytes: int64(m.sum(metricHeapInuse, nil)),
		StartToReady:            seconds(m.sum(metricStartup, map[string]string{"phase": "ready"})),
		Programming:             seconds(m.sum(metricFullSync+"_sum", nil)),
	}
	h0, err := l.agentHistogram(ctx, node)
	if err != nil {
		return nil, err
	}
	cpu0 := procCPU(nd.AgentPid)
	if err := l.changeFillers(ctx, n); err != nil {
		return nil, err
	}
	var last histogram
	if err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, changeProgramDeadline, true, func(ctx context.Context) (bool, error) {
		h, err := l.agentHistogram(ctx, node)
		if err == nil {
			last = h
		}
		return err == nil && h.count-h0.count >= n, nil
	}); err != nil {
		return nil, fmt.Errorf("agent on %s programmed %d of %d changes: %w", node, last.count-h0.count, n, err)
	}
	if n > 0 {
		c.CPUPer1000Changes = seconds((procCPU(nd.AgentPid) - cpu0) * 1000 / float64(n))
	}
	c.Memory = procMemory(nd.AgentPid)
	return c, nil
}

// procMemory reads a process's resident memory from /proc/<pid>/status.
func procMemory(pid int) AgentMemory {
	kib := procStatusFields(pid)
	b := func(field string) int64 { return int64(kib(field) * 1024) }
	return AgentMemory{RSSBytes: b("VmRSS"), AnonBytes: b("RssAnon"), FileBytes: b("RssFile"), PeakRSSBytes: b("VmHWM")}
}

// changeFillers replaces the last endpoint address of the filler Services 1..n (a pod replaced by one
// at a new address).
func (l *Lab) changeFillers(ctx context.Context, n int) error {
	slices := l.Client.DiscoveryV1().EndpointSlices("default")
	return parallel(ctx, n, func(i int) error {
		name := "filler-" + strconv.Itoa(i+1)
		sl, err := slices.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get slice %s: %w", name, err)
		}
		sl.Endpoints[len(sl.Endpoints)-1].Addresses = []string{fillerEndpoint(changedEndpoints + i).String()}
		if _, err := slices.Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update slice %s: %w", name, err)
		}
		return nil
	})
}

// scrapeAgent GETs node's agent /metrics and parses it.
func (l *Lab) scrapeAgent(ctx context.Context, node string) (metricSet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.AgentURL(node)+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := scaleHTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape agent on %s: %w", node, err)
	}
	defer resp.Body.Close()
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape agent on %s: %w", node, err)
	}
	return m, nil
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
