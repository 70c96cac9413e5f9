// Package trace runs a node's datapath programs on one synthesized packet with BPF_PROG_TEST_RUN and
// says what they would do with it: frontend matched, backend chosen, NAT, tunnel peer or redirect,
// verdict or drop reason. Nothing is sent and nothing changes in the live maps: the programs are loaded
// afresh from the embedded objects (the ones the agent loads) over unpinned copies of the node's maps.
package trace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/kubedirect/kubedirect/bpf"
	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// Iface is where the packet enters the node.
type Iface string

// Entry points.
const (
	// Netdev is the node's NIC (from-netdev): a client outside the cluster, NodePorts and external IPs.
	Netdev Iface = "netdev"
	// Pod is a local pod's veth (from-container): From must be a pod of this node.
	Pod Iface = "pod"
)

// Request is the packet to trace.
type Request struct {
	From, To netip.AddrPort
	// Proto is "tcp" (a SYN) or "udp".
	Proto string
	Iface Iface
}

// ParseRequest parses the CLI form: from "IP:PORT", to "IP:PORT/tcp|udp" (tcp when the protocol is
// left out), iface netdev or pod.
func ParseRequest(from, to, iface string) (Request, error) {
	r := Request{Proto: "tcp", Iface: Iface(iface)}
	if i := strings.LastIndexByte(to, '/'); i >= 0 {
		r.Proto = strings.ToLower(to[i+1:])
		to = to[:i]
	}
	var err error
	if r.From, err = netip.ParseAddrPort(from); err != nil || !r.From.Addr().Is4() {
		return r, fmt.Errorf("parse --from %q: want IPv4:PORT", from)
	}
	if r.To, err = netip.ParseAddrPort(to); err != nil || !r.To.Addr().Is4() {
		return r, fmt.Errorf("parse --to %q: want IPv4:PORT/tcp|udp", to)
	}
	if r.Proto != "tcp" && r.Proto != "udp" {
		return r, fmt.Errorf("parse --to: protocol %q is not tcp or udp", r.Proto)
	}
	if r.Iface != Netdev && r.Iface != Pod {
		return r, fmt.Errorf("parse --iface %q: want netdev or pod", iface)
	}
	return r, nil
}

// Result is what the datapath would do with the packet (the `-o json` shape of `kubedirect trace`).
type Result struct {
	// Node is filled in by the caller (the CLI).
	Node string `json:"node,omitempty"`
	// Program is the program run: from-netdev or from-container.
	Program string `json:"program"`
	// Packet is the traced packet, "TCP 203.0.113.7:40000 -> 172.18.0.2:30080".
	Packet string `json:"packet"`
	// Established is true when the node's conntrack already held the flow (its next packet was traced).
	Established bool `json:"established"`
	// Frontend is the service frontend matched; nil when none.
	Frontend *Frontend `json:"frontend,omitempty"`
	// Backend is the backend chosen (IP:PORT), BackendNode the node it runs on when it is not this one
	// (its InternalIP; the CLI adds the name).
	Backend         string `json:"backend,omitempty"`
	BackendNodeIP   string `json:"backendNodeIP,omitempty"`
	BackendNodeName string `json:"backendNode,omitempty"`
	// TunnelPeer is the node the packet is encapsulated to; RedirectIfindex/Interface where it is sent.
	TunnelPeer        string `json:"tunnelPeer,omitempty"`
	RedirectIfindex   uint32 `json:"redirectIfindex,omitempty"`
	RedirectInterface string `json:"redirectInterface,omitempty"`
	// Verdict is the datapath's: pass, dnat, revnat, local, encap, fib_out, reject or drop; DropReason
	// is set with drop (and with reject: no_backend).
	Verdict    string `json:"verdict"`
	DropReason string `json:"dropReason,omitempty"`
	// Counted are every kd_metrics counter the packet moved.
	Counted []string `json:"counted"`
	// Action is the tc return code: ok, shot, redirect.
	Action string `json:"action"`
	// Output is the packet as the program left it (after NAT); nil when dropped.
	Output *Packet `json:"output,omitempty"`
}

// Frontend is a matched service frontend.
type Frontend struct {
	// Addr is the frontend address, "*" for a NodePort on any node address.
	Addr  string `json:"addr"`
	Port  uint16 `json:"port"`
	Proto string `json:"proto"`
	// Scope is cluster (ClusterIP) or external (NodePort, external and LoadBalancer IPs).
	Scope     string `json:"scope"`
	ServiceID uint32 `json:"serviceID"`
	// Service is namespace/name, filled in by the caller (the CLI) from the API server.
	Service string `json:"service,omitempty"`
}

// String is "*:30080/TCP" or "10.96.0.10:80/TCP".
func (f Frontend) String() string {
	return f.Addr + ":" + strconv.Itoa(int(f.Port)) + "/" + strings.ToUpper(f.Proto)
}

// Packet is the headers of an output packet.
type Packet struct {
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Proto string `json:"proto"`
}

// Run traces req through the datapath whose maps are live (the node's pinned maps). It must run in the
// node's network namespace (FIB lookups are real).
func Run(live *maps.Set, req Request) (Result, error) {
	res := Result{Packet: fmt.Sprintf("%s %s -> %s", strings.ToUpper(req.Proto), req.From, req.To)}
	cp, err := copyMaps(live)
	if err != nil {
		return res, err
	}
	defer cp.Close()
	cfg, err := cp.GetConfig()
	if err != nil {
		return res, fmt.Errorf("read config: %w", err)
	}
	// every flow and every redirect reported, whatever the node's sampling
	run := cfg
	run.EventSample, run.SampleOverride, run.OverrideUntil = 1, 0, 0
	run.Debug |= maps.DebugTrace
	if err := cp.SetConfig(run); err != nil {
		return res, fmt.Errorf("configure trace copy: %w", err)
	}
	proto := uint8(6)
	if req.Proto == "udp" {
		proto = 17
	}
	ctKey := maps.ConntrackKey{SrcAddr: req.From.Addr().As4(), DstAddr: req.To.Addr().As4(),
		SrcPort: req.From.Port(), DstPort: req.To.Port(), Proto: proto, Dir: maps.CTForward}
	var ct maps.ConntrackValue
	for _, m := range []*ebpf.Map{cp.Conntrack, cp.ConntrackNew} { // confirmed flows, then new ones
		if m != nil && m.Lookup(&ctKey, &ct) == nil && ct.Expires >= maps.MonotonicNow() {
			res.Established = true
			break
		}
	}

	prog, ifindex, pkt, err := program(cp, cfg, req, proto)
	if err != nil {
		return res, err
	}
	defer prog.Close()
	res.Program = prog.name
	events, err := ringbuf.NewReader(cp.Events)
	if err != nil {
		return res, fmt.Errorf("read trace events: %w", err)
	}
	defer events.Close()
	out := make([]byte, len(pkt)+1500) // room for an ICMP error or headers a program adds
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, DataOut: out,
		Context: skbContext{IngressIfindex: ifindex, Ifindex: ifindex}})
	if err != nil {
		return res, fmt.Errorf("run %s: %w", prog.name, err)
	}
	res.Action = action(ret)
	if ret != tcActShot {
		res.Output = parsePacket(out)
	}
	counters, err := cp.ReadMetrics()
	if err != nil {
		return res, err
	}
	res.Counted, res.Verdict, res.DropReason = verdict(counters)
	for _, e := range drain(events) {
		explain(&res, cp, e)
	}
	if res.Backend == "" && res.Established && ct.NATAddr != [4]byte{} {
		res.Backend = netip.AddrPortFrom(netip.AddrFrom4(ct.NATAddr), ct.NATPort).String()
	}
	if res.Established && res.BackendNodeIP == "" && ct.Flags&maps.CTNodePortRemote != 0 {
		res.BackendNodeIP = netip.AddrFrom4(ct.TunnelPeer).String()
	}
	if res.Frontend == nil && res.Established {
		res.Frontend = frontendOf(cp, ct.ServiceID, req.To, proto)
	}
	return res, nil
}

// tc actions.
const (
	tcActOK       = 0
	tcActShot     = 2
	tcActRedirect = 7
)

func action(ret uint32) string {
	switch ret {
	case tcActOK:
		return "ok"
	case tcActShot:
		return "shot"
	case tcActRedirect:
		return "redirect"
	}
	return strconv.Itoa(int(int32(ret)))
}

// skbContext is the leading part of struct __sk_buff BPF_PROG_TEST_RUN takes: the packet arrives on
// ifindex.
type skbContext struct {
	Len, PktType, Mark, QueueMapping, Protocol, VlanPresent, VlanTCI, VlanProto, Priority uint32
	IngressIfindex, Ifindex                                                               uint32
}

// loadedProgram is one program of a freshly loaded object, with the object's other programs.
type loadedProgram struct {
	*ebpf.Program
	name   string
	closer func() error
}

func (p loadedProgram) Close() error { return p.closer() }

// program loads the entry program of req over the copies and builds the Ethernet frame it is run on.
func program(cp *maps.Set, cfg maps.Config, req Request, proto uint8) (loadedProgram, uint32, []byte, error) {
	var srcMAC, dstMAC [6]byte
	var ifindex uint32
	var lp loadedProgram
	switch req.Iface {
	case Netdev:
		var objs bpf.NetdevPrograms
		if err := loadObject(bpf.LoadNetdev, cp, &objs); err != nil {
			return lp, 0, nil, err
		}
		lp = loadedProgram{objs.FromNetdev, "from-netdev", objs.Close}
		ifindex = cfg.NetdevIfindex
		if ifc, err := net.InterfaceByIndex(int(ifindex)); err == nil {
			copy(dstMAC[:], ifc.HardwareAddr)
		}
		srcMAC = [6]byte{0x02, 0x6b, 0x64, 0x74, 0x72, 0x63} // locally administered: no real client's
	case Pod:
		var ep maps.EndpointValue
		a := req.From.Addr().As4()
		if err := cp.Endpoints.Lookup(&a, &ep); err != nil {
			return lp, 0, nil, fmt.Errorf("--from %s is not a pod of this node: %w", req.From.Addr(), err)
		}
		var objs bpf.ContainerPrograms
		if err := loadObject(bpf.LoadContainer, cp, &objs); err != nil {
			return lp, 0, nil, err
		}
		lp = loadedProgram{objs.FromContainer, "from-container", objs.Close}
		ifindex, srcMAC, dstMAC = ep.Ifindex, ep.MAC, ep.HostMAC
	}
	return lp, ifindex, frame(srcMAC, dstMAC, req.From, req.To, proto), nil
}

// loadObject loads the programs of the embedded object spec returns into objs, over the copies.
func loadObject(spec func() (*ebpf.CollectionSpec, error), cp *maps.Set, objs any) error {
	s, err := spec()
	if err != nil {
		return fmt.Errorf("load BPF object: %w", err)
	}
	return loader.LoadObject(s, cp.ByName(), objs)
}

// drain returns the events the run produced.
func drain(r *ringbuf.Reader) []maps.Event {
	var out []maps.Event
	r.SetDeadline(time.Now())
	for {
		rec, err := r.Read()
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return out
			}
			return out
		}
		if e, err := maps.DecodeEvent(rec.RawSample); err == nil {
			out = append(out, e)
		}
	}
}

// explain adds what one event says to res: a flow event names the frontend (service id), the backend
// and the tunnel peer; a redirect trace event (no addresses) names where the packet was sent.
func explain(res *Result, cp *maps.Set, e maps.Event) {
	if e.SrcAddr == [4]byte{} && e.DstAddr == [4]byte{} { // kd_trace: a redirect
		res.RedirectIfindex = e.ServiceID
		if ifc, err := net.InterfaceByIndex(int(e.ServiceID)); err == nil {
			res.RedirectInterface = ifc.Name
		}
		if e.TunnelPeer != [4]byte{} {
			res.TunnelPeer = netip.AddrFrom4(e.TunnelPeer).String()
		}
		return
	}
	if e.ServiceID != 0 && res.Frontend == nil {
		res.Frontend = frontendOf(cp, e.ServiceID, netip.AddrPortFrom(netip.AddrFrom4(e.DstAddr), e.DstPort), e.Proto)
	}
	if e.NATAddr != [4]byte{} && res.Backend == "" {
		res.Backend = netip.AddrPortFrom(netip.AddrFrom4(e.NATAddr), e.NATPort).String()
	}
	if e.TunnelPeer != [4]byte{} {
		res.BackendNodeIP = netip.AddrFrom4(e.TunnelPeer).String()
	}
	if n, ok := maps.DropReasonNames[int(e.Reason)]; ok && res.DropReason == "" {
		res.DropReason = n // a reject's reason (no_backend) is in its event, not in the drop counters
	}
}

// frontendOf finds the frontend of service id that to matched: its exact address, else the NodePort
// wildcard.
func frontendOf(cp *maps.Set, id uint32, to netip.AddrPort, proto uint8) *Frontend {
	var exact, wildcard *Frontend
	_ = cp.IterateServices(func(k maps.ServiceKey, v maps.ServiceValue) bool {
		if v.ID != id || k.Port != to.Port() || k.Proto != proto {
			return true
		}
		f := &Frontend{Addr: netip.AddrFrom4(k.Addr).String(), Port: k.Port, Proto: protoName(k.Proto),
			Scope: scopeName(k.Scope), ServiceID: id}
		switch {
		case k.Addr == to.Addr().As4():
			exact = f
		case k.Addr == [4]byte{}:
			f.Addr = "*"
			wildcard = f
		}
		return true
	})
	if exact != nil {
		return exact
	}
	return wildcard
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

func scopeName(s uint8) string {
	if s == maps.ScopeExternal {
		return "external"
	}
	return "cluster"
}

// verdictOrder ranks the verdict counters, most telling first: a DNAT that was then encapsulated is
// an encap, one delivered to a local pod is local.
var verdictOrder = []string{"drop", "reject", "encap", "local", "fib_out", "dnat", "revnat", "pass"}

// verdict reads the copy's counters (fresh: only this packet moved them).
func verdict(c maps.Counters) (counted []string, verdict, reason string) {
	for n, m := range c.Verdicts {
		if m.Packets > 0 {
			counted = append(counted, n)
		}
	}
	for n, m := range c.Drops {
		if m.Packets > 0 {
			counted = append(counted, "drop:"+n)
			reason = n
		}
	}
	slices.Sort(counted)
	for _, v := range verdictOrder {
		if slices.Contains(counted, v) {
			return counted, v, reason
		}
	}
	if reason != "" {
		return counted, "drop", reason
	}
	return counted, "pass", reason // nothing counted: the packet went on untouched
}

// frame builds an Ethernet + IPv4 + TCP SYN (or UDP) frame with valid checksums.
func frame(srcMAC, dstMAC [6]byte, from, to netip.AddrPort, proto uint8) []byte {
	payload := []byte("kubedirect trace")
	l4len := 8 + len(payload)
	if proto == 6 {
		l4len = 20 + len(payload)
	}
	b := make([]byte, 14+20+l4len)
	copy(b[0:6], dstMAC[:])
	copy(b[6:12], srcMAC[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+l4len))
	binary.BigEndian.PutUint16(ip[4:], 0x6b64)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = proto
	s, d := from.Addr().As4(), to.Addr().As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
	l4 := b[34:]
	binary.BigEndian.PutUint16(l4[0:], from.Port())
	binary.BigEndian.PutUint16(l4[2:], to.Port())
	if proto == 6 {
		binary.BigEndian.PutUint32(l4[4:], 1)
		l4[12] = 5 << 4
		l4[13] = 0x02 // SYN
		binary.BigEndian.PutUint16(l4[14:], 64240)
		copy(l4[20:], payload)
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(l4len))
		copy(l4[8:], payload)
	}
	// pseudo-header sum: addresses, protocol, length
	var pseudo uint32
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(s[i:])) + uint32(binary.BigEndian.Uint16(d[i:]))
	}
	pseudo += uint32(proto) + uint32(l4len)
	off := 16
	if proto == 17 {
		off = 6
	}
	binary.BigEndian.PutUint16(l4[off:], checksum(l4, pseudo))
	return b
}

// checksum is the Internet checksum of b with initial sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// parsePacket reads the IPv4 and L4 headers of an output frame; nil when it is not IPv4.
func parsePacket(b []byte) *Packet {
	if len(b) < 34 || binary.BigEndian.Uint16(b[12:]) != 0x0800 {
		return nil
	}
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	if len(ip) < ihl+4 {
		return nil
	}
	src, dst := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	p := &Packet{Src: src.String(), Dst: dst.String(), Proto: protoName(ip[9])}
	switch ip[9] {
	case 6, 17:
		l4 := ip[ihl:]
		p.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:])).String()
		p.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:])).String()
	case 1:
		p.Proto = "icmp"
	}
	return p
}
