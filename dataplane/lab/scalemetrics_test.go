package lab

import (
	"strconv"
	"strings"
	"testing"
)

// TestScaleLatencyQuantilesOfTheBurstOnly: the burst's p50/p99 come from the observations between two
// scrapes of every agent's histogram, summed over the agents, interpolated within the bucket as
// Prometheus' histogram_quantile does; what an agent observed before the burst does not count.
func TestScaleLatencyQuantilesOfTheBurstOnly(t *testing.T) {
	scrape := func(text string) histogram {
		t.Helper()
		m, err := parseMetrics(strings.NewReader(text))
		if err != nil {
			t.Fatal(err)
		}
		h, ok := m.histogram(programLatencyMetric)
		if !ok {
			t.Fatal("no histogram")
		}
		return h
	}
	const family = "# TYPE kubedirect_service_programming_latency_seconds histogram\n"
	bucket := func(le string, n int) string {
		return "kubedirect_service_programming_latency_seconds_bucket{le=\"" + le + "\"} " + strconv.Itoa(n) + "\n"
	}
	series := func(b1, b2, b4, inf int) string {
		return family + bucket("0.001", b1) + bucket("0.002", b2) + bucket("0.004", b4) + bucket("+Inf", inf) +
			"kubedirect_service_programming_latency_seconds_sum 1\nkubedirect_service_programming_latency_seconds_count " + strconv.Itoa(inf) + "\n"
	}
	// node a: 50 slow observations before the burst (beyond 4 ms), then 100 in the burst, all below 1 ms
	a0, a1 := scrape(series(0, 0, 0, 50)), scrape(series(100, 100, 100, 150))
	// node b: 100 in the burst, all between 2 and 4 ms
	b0, b1 := scrape(series(0, 0, 0, 0)), scrape(series(0, 0, 100, 100))
	lat := burstLatency([]histogram{a0, b0}, []histogram{a1, b1})
	if lat.Count != 200 {
		t.Errorf("count %d, want 200", lat.Count)
	}
	// rank 100 of 200 is the last of node a's (bucket 0..1 ms): 1 ms
	if lat.P50 != 0.001 {
		t.Errorf("p50 %v s, want 0.001", lat.P50)
	}
	// rank 198 is the 98th of 100 in the 2..4 ms bucket: 2 + 2*98/100 ms
	if want := 0.002 + 0.002*98/100; lat.P99 < want-1e-12 || lat.P99 > want+1e-12 {
		t.Errorf("p99 %v s, want %v", lat.P99, want)
	}
	if want := 0.002 + 0.002*99/100; lat.WorstNodeP99 < want-1e-12 || lat.WorstNodeP99 > want+1e-12 {
		t.Errorf("worst node p99 %v s, want %v (node b)", lat.WorstNodeP99, want)
	}
}
