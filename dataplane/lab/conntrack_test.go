package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/echo"
	"github.com/kubedirect/kubedirect/dataplane/lab"
	corev1 "k8s.io/api/core/v1"
)

// fixedPortUDP is a UDP client in the client namespace that keeps its source port, as DNS resolvers,
// syslog, game and VoIP clients do.
type fixedPortUDP struct {
	c   *net.UDPConn
	dst *net.UDPAddr
}

func newFixedPortUDP(t *testing.T, netns, dst string) *fixedPortUDP {
	t.Helper()
	u := &fixedPortUDP{}
	var err error
	if u.dst, err = net.ResolveUDPAddr("udp4", dst); err != nil {
		t.Fatal(err)
	}
	err = lab.In(netns, func() error {
		u.c, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 40053})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.c.Close() })
	return u
}

// ask sends one datagram and returns the echo's reply (or an error after timeout).
func (u *fixedPortUDP) ask(timeout time.Duration) (echo.Reply, error) {
	var r echo.Reply
	if _, err := u.c.WriteToUDP([]byte("ping"), u.dst); err != nil {
		return r, err
	}
	buf := make([]byte, 65535)
	deadline := time.Now().Add(timeout)
	for {
		_ = u.c.SetReadDeadline(deadline)
		n, from, err := u.c.ReadFromUDP(buf)
		if err != nil {
			return r, err
		}
		if !from.IP.Equal(u.dst.IP) || from.Port != u.dst.Port {
			return r, fmt.Errorf("reply from %s, want %s", from, u.dst)
		}
		if err := json.Unmarshal(buf[:n], &r); err != nil {
			continue // a late reply of an earlier datagram cut short; wait for ours
		}
		return r, nil
	}
}

// TestRootLabUDPFixedPortFollowsReplacedBackend: a UDP client that keeps its source port gets answers
// again soon after its backend pod is replaced by a pod on another node. Without the conntrack flush its
// datagrams keep their flow's old backend forever (every datagram refreshes the entries).
func TestRootLabUDPFixedPortFollowsReplacedBackend(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	old := addPod(t, l, "node-2", "u1")
	svc := service(t, l, "udpfixed", corev1.ServiceTypeNodePort, nil, old)
	_, udpPort := nodePorts(svc)
	n1, _ := l.Node("node-1")
	u := newFixedPortUDP(t, l.State.ClientNS, net.JoinHostPort(n1.IP, strconv.Itoa(udpPort)))
	err := eventually(5*time.Second, func() error {
		r, err := u.ask(500 * time.Millisecond)
		if err != nil {
			return err
		}
		return checkReply(r, l.State.ClientIP, old.Name)
	})
	if err != nil {
		t.Fatalf("before the replacement: %v", err)
	}

	// A rolling update: the new pod on node-3 becomes the endpoint, the old one goes.
	repl := addPod(t, l, "node-3", "u2")
	if err := l.SetBackends(ctx, "default", "udpfixed", []lab.Pod{repl}); err != nil {
		t.Fatal(err)
	}
	if err := l.DeletePod(ctx, old.Name); err != nil {
		t.Fatal(err)
	}
	var last error
	err = eventually(10*time.Second, func() error {
		r, err := u.ask(500 * time.Millisecond)
		if err == nil {
			err = checkReply(r, l.State.ClientIP, repl.Name)
		}
		last = err
		return err
	})
	if err != nil {
		t.Fatalf("after the backend was replaced the same client port got no answer from %s for 10 s: %v", repl.Name, last)
	}
}

// TestRootLabNodePortAffinityTimeout: sessionAffinity ClientIP with timeoutSeconds on a NodePort Service
// keeps a client on one backend within the timeout and lets it go after: connections more than the
// timeout apart spread over the backends (the ingress node and the backend's node both pick).
func TestRootLabNodePortAffinityTimeout(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	pods := []lab.Pod{addPod(t, l, "node-1", "a1"), addPod(t, l, "node-2", "a2"), addPod(t, l, "node-3", "a3"),
		addPod(t, l, "node-2", "a4")}
	timeout := int32(1)
	svc := service(t, l, "afftimeout", corev1.ServiceTypeNodePort, func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	}, pods...)
	httpPort, _ := nodePorts(svc)
	n1, _ := l.Node("node-1")
	addr := net.JoinHostPort(n1.IP, strconv.Itoa(httpPort))
	get := func() string {
		t.Helper()
		var pod string
		err := eventually(3*time.Second, func() error {
			r, err := l.HTTP(ctx, l.State.ClientNS, addr, time.Second)
			pod = r.Pod
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return pod
	}
	// Within the timeout: one backend.
	first := get()
	for i := 0; i < 5; i++ {
		if p := get(); p != first {
			t.Fatalf("within the affinity timeout the client moved from %s to %s", first, p)
		}
	}
	// Connections farther apart than the timeout: spread.
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		time.Sleep(1500 * time.Millisecond)
		seen[get()]++
	}
	if len(seen) < 2 {
		t.Errorf("connections %v apart all went to %v: the affinity outlived its %d s timeout", 1500*time.Millisecond, seen, timeout)
	}
}
