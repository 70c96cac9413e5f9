package lab_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubedirect/kubedirect/dataplane/flows"
	"github.com/kubedirect/kubedirect/dataplane/lab"
)

// agentFlows runs `kubedirect agent flows --since 1m` for a node as `kubedirect monitor` runs it in the
// agent pod (standard input held open until it is done) and returns its records.
func agentFlows(t *testing.T, l *lab.Lab, node string) []flows.Record {
	t.Helper()
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, l.State.Binary, "agent", "flows", "--config", n.Config, "--since", "1m")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("agent flows on %s: %v", node, err)
	}
	var recs []flows.Record
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r flows.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("agent flows on %s printed %q: %v", node, sc.Text(), err)
		}
		recs = append(recs, r)
	}
	return recs
}

// TestRootLabFlowsShowClientFrontendBackendAndLocalDrop: after a real connection from the outside client
// to node-1's NodePort (backend on node-2), `agent flows` on node-1 shows the flow with the client's
// address, the frontend, the backend and node-2 as tunnel peer, and node-2 shows the same client reaching
// the backend; a hit on an externalTrafficPolicy Local NodePort of node-1, which has no local backend,
// shows as a drop with reason no_local_backend (before node-1 knows the endpoints it is a reject, no_backend).
func TestRootLabFlowsShowClientFrontendBackendAndLocalDrop(t *testing.T) {
	l := newLab(t, "tunnel")
	ctx := context.Background()
	backend := addPod(t, l, "node-2", "web")
	web := service(t, l, "flows-web", corev1.ServiceTypeNodePort, nil, backend)
	local := service(t, l, "flows-local", corev1.ServiceTypeNodePort, func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}, backend)
	webPort, _ := nodePorts(web)
	localPort, _ := nodePorts(local)
	n1, err := l.Node("node-1")
	if err != nil {
		t.Fatal(err)
	}
	n2, err := l.Node("node-2")
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddr(l.State.ClientIP)

	if err := eventually(5*time.Second, func() error {
		r, err := l.HTTP(ctx, l.State.ClientNS, net.JoinHostPort(n1.IP, strconv.Itoa(webPort)), time.Second)
		if err != nil {
			return err
		}
		return checkReply(r, l.State.ClientIP, backend.Name)
	}); err != nil {
		t.Fatal(err)
	}
	webFront := netip.AddrPortFrom(netip.MustParseAddr(n1.IP), uint16(webPort))
	localFront := netip.AddrPortFrom(netip.MustParseAddr(n1.IP), uint16(localPort))
	var fwd, drop, lost bool
	var recs []flows.Record
	// until node-1 has the Local Service's endpoints (all on node-2), its hit is a reject (no_backend)
	for try := 0; try < 10 && !drop; try++ {
		if r, err := l.HTTP(ctx, l.State.ClientNS, net.JoinHostPort(n1.IP, strconv.Itoa(localPort)), 700*time.Millisecond); err == nil {
			t.Fatalf("eTP Local NodePort on node-1 (no local backend) answered: %+v", r)
		}
		recs = agentFlows(t, l, "node-1")
		for _, r := range recs {
			switch {
			case r.Lost != nil:
				lost = r.Lost.Node == "node-1"
			case r.Flow.Frontend == webFront && r.Flow.Verdict == flows.VerdictForward:
				f := r.Flow
				if f.Source.Addr() != client || f.Backend.Addr().String() != backend.IP || f.TunnelPeer.String() != n2.IP || f.Node != "node-1" {
					t.Errorf("node-1 forward %+v: want source %s, backend %s, tunnel peer %s", f, client, backend.IP, n2.IP)
				}
				fwd = true
			case r.Flow.Frontend == localFront && r.Flow.Verdict == flows.VerdictDrop:
				if r.Flow.Reason != "no_local_backend" || r.Flow.Source.Addr() != client {
					t.Errorf("node-1 drop %+v: want reason no_local_backend from %s", r.Flow, client)
				}
				drop = true
			}
		}
	}
	if !fwd || !drop || !lost {
		t.Fatalf("node-1 flows %s: forward to %s seen %v, eTP Local drop at %s seen %v, loss record %v", dump(recs), webFront, fwd, localFront, drop, lost)
	}
	var seen bool
	for _, r := range agentFlows(t, l, "node-2") {
		if f := r.Flow; f != nil && f.Verdict == flows.VerdictForward && f.Source.Addr() == client &&
			f.Backend.Addr().String() == backend.IP && f.TunnelPeer.String() == n1.IP {
			seen = true
		}
	}
	if !seen {
		t.Fatalf("node-2 shows no flow from %s to %s forwarded by %s", client, backend.IP, n1.IP)
	}
}

func dump(recs []flows.Record) string {
	b, _ := json.Marshal(recs)
	return string(b)
}
