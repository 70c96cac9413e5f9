// Package flows turns the datapath's flow events (the kd_events ring buffer) into flow records, keeps
// the last ones of a node in memory and serves them, past and live, to local clients over a unix socket
// next to the CNI plugin's. `kubedirect agent flows` is that client inside the agent pod, and
// `kubedirect monitor` runs it on every node through the Kubernetes API and merges what they print.
//
// The agent reads the ring buffer on one goroutine and does nothing costly per event: no name is
// resolved on the node (the CLI names Services from the API server).
package flows

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// Verdicts of a Flow.
const (
	VerdictForward = "forward" // translated and sent on (to a local backend or through the tunnel)
	VerdictDrop    = "drop"
	VerdictReject  = "reject" // no endpoints: the client got a TCP RST or ICMP unreachable
)

// Flow is one flow event of a node: a new flow the datapath translated (sampled) or a packet it dropped
// or rejected. Its JSON is one line of `kubedirect agent flows` and of `kubedirect monitor -o json`.
type Flow struct {
	// Time is when the datapath saw the packet.
	Time time.Time `json:"time"`
	// Node is the node whose datapath emitted the event.
	Node string `json:"node"`
	// Verdict is forward, drop or reject.
	Verdict string `json:"verdict"`
	// Action is what a forward did: dnat (to a backend on this node) or encap (into the tunnel).
	Action string `json:"action,omitempty"`
	// Reason is why a packet was dropped or rejected (maps.DropReasonNames: no_local_backend, ...).
	Reason string `json:"reason,omitempty"`
	// Proto is tcp or udp (or the IP protocol number of another dropped packet).
	Proto string `json:"proto"`
	// Source is the client as the backend sees it (kubedirect preserves client addresses).
	Source netip.AddrPort `json:"source"`
	// Frontend is the address the client sent to: a ClusterIP, a node address and NodePort, an external IP.
	// For a dropped packet, its destination at the drop.
	Frontend netip.AddrPort `json:"frontend"`
	// Service is the frontend's Service (namespace/name:port/proto), named by `kubedirect monitor`.
	Service string `json:"service,omitempty"`
	// Backend is the endpoint the flow was translated to.
	Backend netip.AddrPort `json:"backend,omitzero"`
	// TunnelPeer is the node the flow was sent to through the overlay, or came from (forwarded NodePort).
	TunnelPeer netip.Addr `json:"tunnelPeer,omitzero"`
	// TunnelPeerNode is the tunnel peer's node name, named by `kubedirect monitor`.
	TunnelPeerNode string `json:"tunnelPeerNode,omitempty"`
	// Program is the BPF program that emitted the event (from-netdev, from-overlay, from-container).
	Program string `json:"program,omitempty"`
}

// Lost counts flow events a reader did not get, so that missing flows are never silent.
type Lost struct {
	// Node is where they were lost.
	Node string `json:"node"`
	// RingBuffer is the number of events the datapath dropped because the ring buffer was full, since
	// the datapath was loaded (kd_metrics' event_lost counter).
	RingBuffer uint64 `json:"ringBuffer"`
	// History is the number of flows pushed out of the agent's bounded history since it started.
	History uint64 `json:"history"`
	// Follow is the number of live flows this client was too slow to take.
	Follow uint64 `json:"follow"`
}

// Record is one line of the socket's answer: a flow, the loss counts, or why the request failed.
type Record struct {
	Flow  *Flow  `json:"flow,omitempty"`
	Lost  *Lost  `json:"lost,omitempty"`
	Error string `json:"error,omitempty"`
}

// programNames name maps.Prog* for Flow.Program.
var programNames = map[uint8]string{
	maps.ProgFromContainer: "from-container", maps.ProgToContainer: "to-container",
	maps.ProgFromNetdev: "from-netdev", maps.ProgToNetdev: "to-netdev",
	maps.ProgFromOverlay: "from-overlay", maps.ProgToOverlay: "to-overlay", maps.ProgSock: "sock",
}

// FromEvent converts a datapath event; wall is the wall clock time of CLOCK_MONOTONIC 0 (see Clock).
// ok is false for events that are not flows (KD_DEBUG_TRACE records).
func FromEvent(e maps.Event, node string, wall time.Time) (f Flow, ok bool) {
	f = Flow{
		Time:     wall.Add(time.Duration(e.Timestamp)),
		Node:     node,
		Proto:    protoName(e.Proto),
		Source:   netip.AddrPortFrom(netip.AddrFrom4(e.SrcAddr), e.SrcPort),
		Frontend: netip.AddrPortFrom(netip.AddrFrom4(e.DstAddr), e.DstPort),
		Program:  programNames[e.Prog],
	}
	if e.NATAddr != ([4]byte{}) {
		f.Backend = netip.AddrPortFrom(netip.AddrFrom4(e.NATAddr), e.NATPort)
	}
	if e.TunnelPeer != ([4]byte{}) {
		f.TunnelPeer = netip.AddrFrom4(e.TunnelPeer)
	}
	switch e.Verdict {
	case maps.MetricDrop:
		f.Verdict, f.Reason = VerdictDrop, maps.DropReasonNames[int(e.Reason)]
	case maps.MetricReject:
		f.Verdict, f.Reason = VerdictReject, maps.DropReasonNames[int(e.Reason)]
	case maps.MetricDNAT, maps.MetricEncap:
		if e.Prog == 0 {
			return f, false // a trace record of a redirect
		}
		f.Verdict, f.Action = VerdictForward, maps.VerdictNames[int(e.Verdict)]
	default:
		return f, false
	}
	return f, true
}

func protoName(p uint8) string {
	switch p {
	case maps.ProtoTCP:
		return "tcp"
	case maps.ProtoUDP:
		return "udp"
	}
	return fmt.Sprint(p)
}

// Clock returns the wall clock time of CLOCK_MONOTONIC 0, which event timestamps count from.
func Clock() time.Time {
	now := time.Now()
	return now.Add(-time.Duration(maps.MonotonicNow()))
}

// SocketPath is the flow socket under the agent's CNI data directory (next to the CNI plugin's).
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "agent", "flows.sock") }

// History keeps a node's last flows (bounded) and hands new ones to followers.
type History struct {
	mu      sync.Mutex
	ring    []Flow
	next    int    // where the next flow goes
	full    bool   // ring has wrapped
	evicted uint64 // flows pushed out
	subs    map[*follower]struct{}
}

// follower is one --follow client's queue.
type follower struct {
	ch   chan Flow
	lost uint64 // under History.mu
}

// followQueue is how many flows a slow follower may lag behind before they count as lost for it.
const followQueue = 1024

// NewHistory keeps the last size flows.
func NewHistory(size int) *History {
	if size < 1 {
		size = 1
	}
	return &History{ring: make([]Flow, size), subs: map[*follower]struct{}{}}
}

// Add records f and passes it to every follower; a follower whose queue is full loses it (counted).
func (h *History) Add(f Flow) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.full {
		h.evicted++
	}
	h.ring[h.next] = f
	h.next++
	if h.next == len(h.ring) {
		h.next, h.full = 0, true
	}
	for s := range h.subs {
		select {
		case s.ch <- f:
		default:
			s.lost++
		}
	}
}

// Since returns the kept flows at or after t, oldest first, and how many flows were evicted in all.
func (h *History) Since(t time.Time) ([]Flow, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Flow
	n := h.next
	if h.full {
		n = len(h.ring)
	}
	for i := range n {
		f := h.ring[(h.next-n+i+len(h.ring))%len(h.ring)]
		if !f.Time.Before(t) {
			out = append(out, f)
		}
	}
	return out, h.evicted
}

// Follow subscribes to new flows until cancel is called. lost reports how many this follower missed.
func (h *History) Follow() (flows <-chan Flow, lost func() uint64, cancel func()) {
	s := &follower{ch: make(chan Flow, followQueue)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	lost = func() uint64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		return s.lost
	}
	cancel = func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
	}
	return s.ch, lost, cancel
}

// Evicted returns how many flows were pushed out of the history.
func (h *History) Evicted() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.evicted
}
