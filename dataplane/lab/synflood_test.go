package lab_test

import (
	"context"
	byteorder "encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubedirect/kubedirect/dataplane/echo"
	"github.com/kubedirect/kubedirect/dataplane/lab"
)

// synFlood sends n TCP SYNs from the lab's client namespace to dst:port, source ports 1024 up, through
// a raw socket, within limit. The backends answer them; the client's kernel resets every SYN-ACK (no
// socket), so no handshake completes: the conntrack load of a SYN flood, bounded.
func synFlood(l *lab.Lab, dst netip.Addr, port uint16, n int, limit time.Duration) (sent int, err error) {
	src := netip.MustParseAddr(l.State.ClientIP)
	err = lab.In(l.State.ClientNS, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("open raw socket: %w", err)
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: dst.As4()}
		deadline := time.Now().Add(limit)
		for ; sent < n && time.Now().Before(deadline); sent++ {
			if err := unix.Sendto(fd, synPacket(src, dst, uint16(1024+sent), port), 0, to); err != nil {
				return fmt.Errorf("send SYN %d: %w", sent, err)
			}
		}
		return nil
	})
	return sent, err
}

// synPacket builds an IPv4 + TCP SYN with valid checksums.
func synPacket(src, dst netip.Addr, sport, dport uint16) []byte {
	b := make([]byte, 40)
	ip, tcp := b[:20], b[20:]
	ip[0], ip[8], ip[9] = 0x45, 64, unix.IPPROTO_TCP
	byteorder.BigEndian.PutUint16(ip[2:], uint16(len(b)))
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	byteorder.BigEndian.PutUint16(ip[10:], inetChecksum(0, ip))
	byteorder.BigEndian.PutUint16(tcp[0:], sport)
	byteorder.BigEndian.PutUint16(tcp[2:], dport)
	byteorder.BigEndian.PutUint32(tcp[4:], uint32(sport)<<16|0x1234)
	tcp[12], tcp[13] = 5<<4, 0x02 // header length 20, SYN
	byteorder.BigEndian.PutUint16(tcp[14:], 64240)
	var pseudo [12]byte
	copy(pseudo[0:], s[:])
	copy(pseudo[4:], d[:])
	pseudo[9] = unix.IPPROTO_TCP
	byteorder.BigEndian.PutUint16(pseudo[10:], uint16(len(tcp)))
	byteorder.BigEndian.PutUint16(tcp[16:], inetChecksum(sum16(0, pseudo[:]), tcp))
	return b
}

func sum16(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(byteorder.BigEndian.Uint16(b[i:]))
	}
	return sum
}

// inetChecksum folds sum plus b (an even length) into the Internet checksum.
func inetChecksum(sum uint32, b []byte) uint16 {
	sum = sum16(sum, b)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// TestRootLabSYNFloodKeepsEstablishedFlows: a SYN flood against a NodePort, with conntrack tables far
// smaller than the flood, must not take the established connections through that NodePort with it:
// each still gets its answers from its own backend afterwards, the agents stay ready, and new
// connections work.
func TestRootLabSYNFloodKeepsEstablishedFlows(t *testing.T) {
	const tableSize, conns, flood = 2048, 12, 20000
	l := newLabWith(t, lab.Options{ExternalServiceMode: "tunnel", ConntrackMapSize: tableSize})
	ctx := context.Background()
	pods := []lab.Pod{addPod(t, l, "node-2", "f1"), addPod(t, l, "node-3", "f2"), addPod(t, l, "node-2", "f3")}
	svc := service(t, l, "flood", corev1.ServiceTypeNodePort, nil, pods...)
	httpPort, _ := nodePorts(svc)
	ingress := l.State.Nodes[0]
	addr := net.JoinHostPort(ingress.IP, strconv.Itoa(httpPort))

	type established struct {
		c   *echo.Conn
		pod string
	}
	var open []established
	for i := 0; i < conns; i++ {
		var e established
		err := eventually(5*time.Second, func() error {
			c, err := l.Dial(ctx, l.State.ClientNS, addr)
			if err != nil {
				return err
			}
			r, err := c.Get(time.Second)
			if err != nil {
				c.Close()
				return err
			}
			e = established{c, r.Pod}
			return nil
		})
		if err != nil {
			t.Fatalf("connection %d before the flood: %v", i, err)
		}
		t.Cleanup(func() { e.c.Close() })
		open = append(open, e)
	}

	start := time.Now()
	sent, err := synFlood(l, netip.MustParseAddr(ingress.IP), uint16(httpPort), flood, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("flood: %d SYNs in %v against %d-entry conntrack tables", sent, time.Since(start).Round(time.Millisecond), tableSize)
	time.Sleep(time.Second) // the last SYN-ACKs and resets

	for i, e := range open {
		r, err := e.c.Get(2 * time.Second)
		if err != nil {
			t.Errorf("established connection %d after the flood: %v", i, err)
			continue
		}
		if r.Pod != e.pod || r.Source != e.c.LocalAddr().String() {
			t.Errorf("established connection %d after the flood: answered by %s seeing %s, want %s seeing %s",
				i, r.Pod, r.Source, e.pod, e.c.LocalAddr())
		}
	}
	for _, n := range l.State.Nodes {
		if err := l.WaitAgentReady(ctx, n.Name, 5*time.Second); err != nil {
			t.Errorf("agent %s after the flood: %v", n.Name, err)
		}
	}
	for i := 0; i < 5; i++ {
		if r, err := l.HTTP(ctx, l.State.ClientNS, addr, 2*time.Second); err != nil {
			t.Errorf("new connection %d after the flood: %v", i, err)
		} else if r.SourceIP() != l.State.ClientIP {
			t.Errorf("new connection %d after the flood: the backend saw %s, want %s", i, r.SourceIP(), l.State.ClientIP)
		}
	}
}
