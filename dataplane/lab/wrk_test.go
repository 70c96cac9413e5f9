package lab_test

import (
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/lab"
)

// wrk 4.1.0's --latency output (Debian bookworm), from a run against the lab's nginx configuration.
const wrkOutput = `Running 3s test @ http://127.0.0.1:8088/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    14.68ms   31.22ms 224.41ms   92.93%
    Req/Sec     2.23k     2.08k   12.21k    90.91%
  Latency Distribution
     50%  633.00us
     75%   11.16ms
     90%   26.16ms
     99%    1.78s
  12728 requests in 3.05s, 1.76MB read
  Socket errors: connect 3, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   4167.71
Transfer/sec:    590.15KB
`

func TestParseWRKReadsRateLatencyAndErrors(t *testing.T) {
	r, err := lab.ParseWRK(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := lab.WRKResult{RequestsPerSec: 4167.71, P50: 633 * time.Microsecond, P99: 1780 * time.Millisecond, Errors: 10}
	if r != want {
		t.Errorf("parsed %+v, want %+v", r, want)
	}
}

func TestParseWRKRefusesARunWithoutRequests(t *testing.T) {
	for _, out := range []string{
		"",
		"unable to connect to 10.0.0.1:80 Connection refused\n",
		"Running 1s test @ http://x/\n  0 requests in 1.00s, 0.00B read\n  Socket errors: connect 5, read 0, write 0, timeout 0\nRequests/sec:      0.00\n",
	} {
		if r, err := lab.ParseWRK(out); err == nil {
			t.Errorf("ParseWRK(%q) = %+v, want an error", out, r)
		}
	}
}
