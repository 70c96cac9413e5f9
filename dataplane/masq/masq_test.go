package masq_test

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/masq"
	"github.com/kubedirect/kubedirect/internal/testutil"
)

// TestRootMasqueradeTable: Sync writes the table nft shows (non-masquerade returns first, then
// masquerade for the node's pod range), a second Sync with other CIDRs replaces rather than appends,
// and Remove deletes it, twice without error.
func TestRootMasqueradeTable(t *testing.T) {
	name, fd := netNS(t)
	list := func() string {
		out, _ := exec.Command("ip", "netns", "exec", name, "nft", "list", "table", "ip", masq.Table).CombinedOutput()
		return string(out)
	}
	r := masq.Rules{PodCIDR: netip.MustParsePrefix("10.244.1.0/24"),
		NonMasquerade: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("172.16.0.0/12")},
		NodeAddr:      netip.MustParseAddr("192.168.1.1"), NodePortFirst: 30000, NodePortLast: 32767}
	if err := masq.Sync(r, masq.InNetNS(fd)); err != nil {
		t.Fatal(err)
	}
	got := list()
	for _, want := range []string{
		"type nat hook postrouting priority srcnat",
		"ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return",
		"ip saddr 10.244.1.0/24 ip daddr 172.16.0.0/12 return",
		"ip saddr 10.244.1.0/24 tcp sport 30000-32767 snat to 192.168.1.1:32768-65535",
		"ip saddr 10.244.1.0/24 udp sport 30000-32767 snat to 192.168.1.1:32768-65535",
		"ip saddr 10.244.1.0/24 masquerade",
	} {
		if !strings.Contains(got, want) {
			t.Fatalf("table lacks %q:\n%s", want, got)
		}
	}
	if strings.Index(got, "return") > strings.Index(got, "masquerade\n") {
		t.Fatalf("masquerade before the exceptions:\n%s", got)
	}
	r.NonMasquerade = r.NonMasquerade[:1]
	if err := masq.Sync(r, masq.InNetNS(fd)); err != nil {
		t.Fatal(err)
	}
	if got := list(); strings.Contains(got, "172.16.0.0/12") || strings.Count(got, "return") != 1 || strings.Count(got, "snat to") != 2 || strings.Count(got, "/24 masquerade\n") != 1 {
		t.Fatalf("second sync did not replace the rules:\n%s", got)
	}
	for i := 0; i < 2; i++ {
		if err := masq.Remove(masq.InNetNS(fd)); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
	if got := list(); !strings.Contains(got, "No such file") {
		t.Fatalf("table still there: %s", got)
	}
}

// TestRootTunnelPacketsSkipConntrack: with the table in place the node's conntrack tracks its flows
// (the masquerade needs it), but the tunnel's UDP packets, node to node and never NATed, leave no
// conntrack entry: each connection through the tunnel would otherwise cost the node an entry for its
// outer flow (the inner flow's hash picks the source port) and the hooks' work on every packet.
func TestRootTunnelPacketsSkipConntrack(t *testing.T) {
	name, fd := netNS(t)
	in := func(args ...string) string {
		out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
		return string(out)
	}
	in("ip", "link", "set", "lo", "up")
	const tunnel, other = 8472, 8473
	if err := masq.Sync(masq.Rules{PodCIDR: netip.MustParsePrefix("10.244.1.0/24"), TunnelPort: tunnel}, masq.InNetNS(fd)); err != nil {
		t.Fatal(err)
	}
	// one datagram from port 40000 to each port: a new flow each, were it tracked
	for _, port := range []int{tunnel, other} {
		in("python3", "-c", fmt.Sprintf(`import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 40000 + %d))
s.sendto(b"x", ("127.0.0.1", %d))`, port-tunnel, port))
	}
	ct := in("cat", "/proc/net/nf_conntrack")
	if !strings.Contains(ct, fmt.Sprintf("dport=%d ", other)) {
		t.Fatalf("conntrack does not track the node's other flows (the test proves nothing):\n%s", ct)
	}
	if strings.Contains(ct, fmt.Sprintf("dport=%d ", tunnel)) {
		t.Fatalf("a tunnel packet created a conntrack entry:\n%s", ct)
	}
}

// netNS creates a network namespace for the test (root only) and returns its name and an open fd.
func netNS(t *testing.T) (string, int) {
	t.Helper()
	testutil.RequireRoot(t)
	n := testutil.NewNetns(t, "kdm")
	return n.Name, n.FD()
}
