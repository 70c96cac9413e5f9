package lab

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
)

// TestConnectOnlyCompletesHandshakeAndResets: the connect probe's connection reaches the listener's
// accept queue (the handshake completed), a closed port fails with ECONNREFUSED, and an address that is
// not IPv4 address:port is refused by name.
func TestConnectOnlyCompletesHandshakeAndResets(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := connectOnly(context.Background(), ln.Addr().String()); err != nil {
		t.Fatalf("connect to a listener: %v", err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("the handshake never reached the accept queue: %v", err)
	}
	// The probe closed with a zero linger: the server sees a reset, not an orderly end.
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("server read after the probe closed: %v, want ECONNRESET", err)
	}
	c.Close()

	closed := ln.Addr().String()
	ln.Close()
	if err := connectOnly(context.Background(), closed); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect to a closed port: %v, want ECONNREFUSED", err)
	}
	if err := connectOnly(context.Background(), "localhost:80"); err == nil {
		t.Error("connect to a host name: no error, want one naming the address")
	}
}
