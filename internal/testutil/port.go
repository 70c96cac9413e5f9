package testutil

import (
	"net"
	"testing"
)

// FreePort returns a TCP port free on ip (an address of this machine) a moment ago: the test binds it
// next, so another process taking it in between is possible but unlikely.
func FreePort(t testing.TB, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
