package flows

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

func flowAt(t time.Time, port uint16) Flow {
	return Flow{Time: t, Node: "n1", Verdict: VerdictForward, Proto: "tcp",
		Source: netip.MustParseAddrPort("192.0.2.1:40000"), Frontend: netip.AddrPortFrom(netip.MustParseAddr("10.96.0.1"), port)}
}

// TestHistoryKeepsLastFlowsAndCountsEvicted: the history is bounded; what it pushed out is counted, and
// --since returns only what is newer than asked, oldest first.
func TestHistoryKeepsLastFlowsAndCountsEvicted(t *testing.T) {
	h := NewHistory(3)
	t0 := time.Unix(1000, 0)
	for i := range 5 {
		h.Add(flowAt(t0.Add(time.Duration(i)*time.Second), uint16(80+i)))
	}
	got, evicted := h.Since(t0.Add(3 * time.Second))
	if evicted != 2 || len(got) != 2 || got[0].Frontend.Port() != 83 || got[1].Frontend.Port() != 84 {
		t.Fatalf("since +3s: %d evicted, flows %+v; want 2 evicted and ports 83, 84", evicted, got)
	}
}

// client reads records from the socket.
type client struct {
	t  *testing.T
	sc *bufio.Scanner
}

func (c client) next() Record {
	c.t.Helper()
	if !c.sc.Scan() {
		c.t.Fatalf("no record: %v", c.sc.Err())
	}
	var r Record
	if err := json.Unmarshal(c.sc.Bytes(), &r); err != nil {
		c.t.Fatalf("record %q: %v", c.sc.Text(), err)
	}
	return r
}

// TestSocketFollowServesHistoryThenLiveFlowsAndEndsOverrideOnClose: a follow session with --sample gets
// the kept flows, the loss counts, then new flows as they come; its override ends when it disconnects.
func TestSocketFollowServesHistoryThenLiveFlowsAndEndsOverrideOnClose(t *testing.T) {
	h := NewHistory(16)
	now := time.Now()
	h.Add(flowAt(now.Add(-time.Hour), 79))
	h.Add(flowAt(now.Add(-time.Second), 80))
	var rate atomic.Uint32
	var ended atomic.Bool
	srv := &Server{Node: "n1", History: h, Log: slog.New(slog.DiscardHandler),
		RingLost: func() (uint64, error) { return 7, nil },
		Override: func(r uint32, d time.Duration) (func(), error) {
			if d != 30*time.Second {
				t.Errorf("override for %s, want 30s", d)
			}
			rate.Store(r)
			return func() { ended.Store(true) }, nil
		},
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	path := filepath.Join(t.TempDir(), "agent", "flows.sock")
	go func() { _ = srv.Serve(ctx, path) }()

	pr, pw := io.Pipe()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		var err error
		for range 50 { // the server may not listen yet
			if err = Stream(sctx, path, Request{Since: time.Minute, Follow: true, Sample: 1, For: 30 * time.Second}, pw); err == nil || sctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		pw.Close()
		done <- err
	}()
	c := client{t, bufio.NewScanner(pr)}
	if r := c.next(); r.Flow == nil || r.Flow.Frontend.Port() != 80 {
		t.Fatalf("first record %+v, want the flow of the last minute (port 80)", r)
	}
	if r := c.next(); r.Lost == nil || r.Lost.RingBuffer != 7 || r.Lost.Node != "n1" {
		t.Fatalf("second record %+v, want the loss counts (ring buffer 7)", r)
	}
	if rate.Load() != 1 {
		t.Fatalf("override rate %d, want 1", rate.Load())
	}
	h.Add(flowAt(time.Now(), 81))
	if r := c.next(); r.Flow == nil || r.Flow.Frontend.Port() != 81 {
		t.Fatalf("live record %+v, want the new flow (port 81)", r)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := 0; !ended.Load(); i++ {
		if i == 100 {
			t.Fatal("the override did not end when the client went away")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
