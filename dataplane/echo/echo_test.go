package echo

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/internal/testutil"
)

func TestServerReportsSource(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := testutil.FreePort(t, "127.0.0.1")
	s := &Server{HTTPPort: port, UDPPort: port, Pod: "p1", Node: "n1"}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var r Reply
	var err error
	for i := 0; i < 50; i++ {
		if r, err = GetHTTP(ctx, "http://"+addr+"/x"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.SourceIP() != "127.0.0.1" || r.Pod != "p1" || r.Node != "n1" || r.Path != "/x" || r.Protocol != "http" {
		t.Fatalf("http reply %+v", r)
	}
	uctx, ucancel := context.WithTimeout(ctx, 2*time.Second)
	defer ucancel()
	u, err := UDP(uctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if u.SourceIP() != "127.0.0.1" || u.Protocol != "udp" || u.Payload != "ping" {
		t.Fatalf("udp reply %+v", u)
	}
	c, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 3; i++ {
		r, err := c.Get(time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.Source != c.LocalAddr().String() {
			t.Fatalf("conn reply source %s, want %s", r.Source, c.LocalAddr())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The e2e checks that a large UDP reply crosses a NodePort whole: the server pads its answer to the
// size asked for, from a fixed client port too.
func TestUDPReplyOfRequestedSizeFromFixedPort(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := testutil.FreePort(t, "127.0.0.1")
	s := &Server{UDPPort: port, Pod: "p1"}
	go func() { _ = s.Run(ctx) }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	src := testutil.FreePort(t, "127.0.0.1")
	var r Reply
	var err error
	for range 50 {
		uctx, ucancel := context.WithTimeout(ctx, time.Second)
		r, err = UDPFrom(uctx, addr, src, 8000)
		ucancel()
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if r.Pod != "p1" || r.Source != "127.0.0.1:"+strconv.Itoa(src) || len(r.Padding) < 7000 {
		t.Errorf("reply from %s, pod %s, padding %d", r.Source, r.Pod, len(r.Padding))
	}
	var results []ProbeResult
	Probe(ctx, ProbeOptions{URL: "udp://" + addr, Count: 3, SourcePort: src, Size: 1500}, func(p ProbeResult) { results = append(results, p) })
	if len(results) != 3 || !results[2].OK || results[2].Pod != "p1" {
		t.Errorf("probe %+v", results)
	}
}

// TestProbeReuseKeepsOneConnectionUntilItBreaks: --reuse asks every time on the connection the first
// attempt opened; when the server closes it, the later attempts fail and nothing is redialled.
func TestProbeReuseKeepsOneConnectionUntilItBreaks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for i := 0; i < 2; i++ { // answer two requests, then close the connection
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body := `{"source":"` + c.RemoteAddr().String() + `","pod":"p"}`
					fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
					_ = req.Body.Close()
				}
			}()
		}
	}()
	var got []ProbeResult
	Probe(context.Background(), ProbeOptions{URL: "http://" + ln.Addr().String() + "/", Count: 4, Reuse: true,
		Timeout: time.Second}, func(r ProbeResult) { got = append(got, r) })
	var oks []bool
	for _, r := range got {
		oks = append(oks, r.OK)
	}
	if fmt.Sprint(oks) != "[true true false false]" || accepted.Load() != 1 {
		t.Errorf("attempts ok %v over %d connections, want [true true false false] over 1: %+v", oks, accepted.Load(), got)
	}
}
