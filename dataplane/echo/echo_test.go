package echo

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestServerReportsSource(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := freePort(t)
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
