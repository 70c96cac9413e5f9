// Package inspect reads what a node's datapath holds (its pinned BPF maps and the agent's status) into
// one Dump, names its entries in a user's terms from the API server's objects (Names), and compares it
// with what the agent's own translation says the node should hold (Desired, Diff). `kubedirect agent
// dump` builds the Dump inside the agent pod; the CLI verbs status, inspect and verify read it through
// the API (provision/agentexec), and the lab tests call this package directly.
//
// The JSON shapes of `-o json` are the Go types of this package: their json tags are the documentation.
package inspect

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// Dump is everything one node's datapath holds, as `kubedirect agent dump -o json` prints it.
type Dump struct {
	// Node is the node's name.
	Node string `json:"node"`
	// Version is the kubedirect version of the agent image that read the maps.
	Version string `json:"version,omitempty"`
	// Time is when the maps were read.
	Time time.Time `json:"time"`
	// Status is the agent's /status document, or StatusError says why it could not be read.
	Status      *agentstatus.Status `json:"status,omitempty"`
	StatusError string              `json:"statusError,omitempty"`
	// Config is the datapath configuration (kd_config).
	Config Config `json:"config"`
	// Maps are each map's fill against its capacity.
	Maps []MapFill `json:"maps"`
	// Attachments are where the programs are attached and how (tcx, clsact, cgroup).
	Attachments []Attachment `json:"attachments,omitempty"`
	// Frontends are the services map's entries; Backends the backend slots they point to.
	Frontends []Frontend    `json:"frontends"`
	Backends  []BackendSlot `json:"backends"`
	// Tunnels route remote pod CIDRs to their node; Endpoints are this node's pods.
	Tunnels   []Tunnel   `json:"tunnels"`
	Endpoints []Endpoint `json:"endpoints"`
	// NodeAddrs are the addresses NodePorts answer on.
	NodeAddrs []netip.Addr `json:"nodeAddrs"`
	// Conntrack and Affinity are the live flow and ClientIP affinity entries.
	Conntrack []Conntrack `json:"conntrack"`
	Affinity  []Affinity  `json:"affinity"`
	// Verdicts and Drops count packets by verdict and by drop reason since the maps were created.
	Verdicts map[string]uint64 `json:"verdicts"`
	Drops    map[string]uint64 `json:"drops"`
}

// Config is the part of kd_config a user reads.
type Config struct {
	NodeIP  netip.Addr   `json:"nodeIP"`
	PodCIDR netip.Prefix `json:"podCIDR"`
	// Mode is the default external service mode: tunnel or dsr.
	Mode string `json:"mode"`
	// EventSample is N when one new flow in N reports a flow event (0: none).
	EventSample uint32 `json:"eventSample"`
}

// MapFill is one map's entries against its capacity.
type MapFill struct {
	Name     string `json:"name"`
	Entries  int    `json:"entries"`
	Capacity int    `json:"capacity"`
}

// Frontend is one services map entry.
type Frontend struct {
	// Address is the frontend's address; invalid (JSON "") for a NodePort, which answers on every node
	// address.
	Address  netip.Addr `json:"address"`
	Port     uint16     `json:"port"`
	Protocol string     `json:"protocol"`
	// Scope is cluster (matched for pods and host sockets) or external (NodePort, external IPs).
	Scope string `json:"scope"`
	// ServiceID names the backend table; Count and LocalCount its slots in the all and local tables.
	ServiceID  uint32 `json:"serviceID"`
	Count      uint16 `json:"count"`
	LocalCount uint16 `json:"localCount"`
	// Flags are the service flags by name (externalLocal, internalLocal, affinity, dsr, tunnel, reject).
	Flags           []string `json:"flags,omitempty"`
	AffinityTimeout uint32   `json:"affinityTimeoutSeconds,omitempty"`
}

// MapKey is the frontend's services map key, rebuilt from its fields (they survive JSON).
func (f Frontend) MapKey() maps.ServiceKey {
	scope, proto := maps.ScopeCluster, uint8(0)
	if f.Scope == "external" {
		scope = maps.ScopeExternal
	}
	switch f.Protocol {
	case "TCP":
		proto = maps.ProtoTCP
	case "UDP":
		proto = maps.ProtoUDP
	}
	return maps.NewServiceKey(f.Address, f.Port, proto, scope)
}

// FlagBits are the service flags Flags names.
func (f Frontend) FlagBits() uint32 {
	var v uint32
	for _, n := range svcFlagNames {
		if slices.Contains(f.Flags, n.name) {
			v |= n.bit
		}
	}
	return v
}

// BackendSlot is one backends map entry.
type BackendSlot struct {
	ServiceID uint32 `json:"serviceID"`
	// Table is all or local.
	Table string `json:"table"`
	Slot  uint16 `json:"slot"`
	Backend
}

// Backend is a backend address and where it runs.
type Backend struct {
	Address netip.Addr `json:"address"`
	Port    uint16     `json:"port"`
	// NodeIP is the node running a remote backend (invalid, JSON "", for a local one).
	NodeIP netip.Addr `json:"nodeIP,omitzero"`
	// Local, Remote and HostNetwork are the backend flags.
	Local       bool `json:"local,omitempty"`
	Remote      bool `json:"remote,omitempty"`
	HostNetwork bool `json:"hostNetwork,omitempty"`
}

// AddrPort is the backend's address and port.
func (b Backend) AddrPort() netip.AddrPort { return netip.AddrPortFrom(b.Address, b.Port) }

// Tunnel is one tunnel map entry: a remote pod CIDR and the node it lives on.
type Tunnel struct {
	PodCIDR netip.Prefix `json:"podCIDR"`
	NodeIP  netip.Addr   `json:"nodeIP"`
}

// Endpoint is one endpoints map entry: a local pod.
type Endpoint struct {
	Address netip.Addr `json:"address"`
	Ifindex uint32     `json:"ifindex"`
	MAC     string     `json:"mac"`
}

// Conntrack is one conntrack entry.
type Conntrack struct {
	// Direction is forward (client -> frontend) or reply (backend -> client).
	Direction string `json:"direction"`
	Protocol  string `json:"protocol"`
	// Source and Destination are the entry's key: the packet as the datapath meets it.
	Source      netip.AddrPort `json:"source"`
	Destination netip.AddrPort `json:"destination"`
	// NAT is the translation: the backend (forward) or the frontend the reply comes from (reply).
	NAT netip.AddrPort `json:"nat"`
	// TunnelPeer is the node the flow is forwarded to or came from (invalid when none).
	TunnelPeer netip.Addr `json:"tunnelPeer,omitzero"`
	// Client is the real client of a hairpin flow's reply entry.
	Client    netip.Addr `json:"client,omitzero"`
	ServiceID uint32     `json:"serviceID"`
	// Flags name the kind of flow (cluster, nodePortLocal, nodePortRemote, nodePortForwarded, dsr,
	// hairpin, hostNetwork), State the TCP state bits.
	Flags []string `json:"flags,omitempty"`
	State []string `json:"state,omitempty"`
	// ExpiresIn is how long the entry lives without traffic (negative: expired, awaiting GC).
	ExpiresIn Duration `json:"expiresIn"`
}

// Affinity is one ClientIP affinity entry.
type Affinity struct {
	ServiceID uint32     `json:"serviceID"`
	Client    netip.Addr `json:"client"`
	Backend   Backend    `json:"backend"`
	// IdleFor is the time since the client last used it.
	IdleFor Duration `json:"idleFor"`
}

// Duration is a time.Duration that reads as "1m30s" in JSON.
type Duration time.Duration

// MarshalText writes the duration as time.Duration.String does, rounded to the second.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(time.Duration(d).Round(time.Second).String()), nil
}

// UnmarshalText reads what MarshalText wrote.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// ProtoName is the Kubernetes spelling of an IP protocol number.
func ProtoName(p uint8) string {
	switch p {
	case maps.ProtoTCP:
		return "TCP"
	case maps.ProtoUDP:
		return "UDP"
	}
	return fmt.Sprintf("proto-%d", p)
}

// flagNames lists the names of the bits of v that names knows, in names' order.
func flagNames[T ~uint8 | ~uint16 | ~uint32](v T, names []struct {
	bit  T
	name string
}) []string {
	var out []string
	for _, n := range names {
		if v&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

var svcFlagNames = []struct {
	bit  uint32
	name string
}{{maps.SvcExternalLocal, "externalLocal"}, {maps.SvcInternalLocal, "internalLocal"}, {maps.SvcAffinity, "affinity"},
	{maps.SvcDSR, "dsr"}, {maps.SvcTunnel, "tunnel"}, {maps.SvcReject, "reject"}}

var ctFlagNames = []struct {
	bit  uint16
	name string
}{{maps.CTCluster, "cluster"}, {maps.CTNodePortLocal, "nodePortLocal"}, {maps.CTNodePortRemote, "nodePortRemote"},
	{maps.CTNodePortFwd, "nodePortForwarded"}, {maps.CTDSR, "dsr"}, {maps.CTHairpin, "hairpin"}, {maps.CTHostNet, "hostNetwork"}}

var tcpStateNames = []struct {
	bit  uint8
	name string
}{{maps.TCPSyn, "syn"}, {maps.TCPEstablished, "established"}, {maps.TCPClosing, "closing"},
	{maps.TCPFinClient, "finClient"}, {maps.TCPFinBackend, "finBackend"}, {maps.TCPSeenReply, "seenReply"}}

// ServiceFlagNames names the service flags set in f.
func ServiceFlagNames(f uint32) []string { return flagNames(f, svcFlagNames) }

// BackendOf converts a backends map value.
func BackendOf(v maps.BackendValue) Backend {
	b := Backend{Address: netip.AddrFrom4(v.Addr), Port: v.Port,
		Local: v.Flags&maps.BackendLocal != 0, Remote: v.Flags&maps.BackendRemote != 0, HostNetwork: v.Flags&maps.BackendHostNet != 0}
	if v.NodeIP != ([4]byte{}) {
		b.NodeIP = netip.AddrFrom4(v.NodeIP)
	}
	return b
}

// FrontendOf converts a services map entry.
func FrontendOf(k maps.ServiceKey, v maps.ServiceValue) Frontend {
	f := Frontend{Port: k.Port, Protocol: ProtoName(k.Proto), Scope: "cluster", ServiceID: v.ID, Count: v.Count,
		LocalCount: v.LocalCount, Flags: ServiceFlagNames(v.Flags), AffinityTimeout: v.AffinityTimeout}
	if k.Addr != ([4]byte{}) {
		f.Address = netip.AddrFrom4(k.Addr)
	}
	if k.Scope == maps.ScopeExternal {
		f.Scope = "external"
	}
	return f
}

func addrOrInvalid(a [4]byte) netip.Addr {
	if a == ([4]byte{}) {
		return netip.Addr{}
	}
	return netip.AddrFrom4(a)
}

// Read reads every map of s into a Dump (without Node, Status and Attachments, which the caller knows).
// now is CLOCK_MONOTONIC in nanoseconds (maps.MonotonicNow), the clock of the expiry times.
func Read(s *maps.Set, now uint64) (*Dump, error) {
	d := &Dump{Time: time.Now().UTC(), Verdicts: map[string]uint64{}, Drops: map[string]uint64{}}
	if c, err := s.GetConfig(); err == nil {
		d.Config = Config{NodeIP: addrOrInvalid(c.NodeIP), EventSample: c.EventSample, Mode: "tunnel"}
		if ones, _ := net.IPMask(c.PodMask[:]).Size(); c.PodCIDR != ([4]byte{}) {
			d.Config.PodCIDR = netip.PrefixFrom(netip.AddrFrom4(c.PodCIDR), ones)
		}
		if c.Mode == maps.ModeDSR {
			d.Config.Mode = "dsr"
		}
	} else {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := s.IterateServices(func(k maps.ServiceKey, v maps.ServiceValue) bool {
		d.Frontends = append(d.Frontends, FrontendOf(k, v))
		return true
	}); err != nil {
		return nil, err
	}
	if err := s.IterateBackends(func(k maps.BackendKey, v maps.BackendValue) bool {
		t := "all"
		if k.Table == maps.TableLocal {
			t = "local"
		}
		d.Backends = append(d.Backends, BackendSlot{ServiceID: k.ServiceID, Table: t, Slot: k.Slot, Backend: BackendOf(v)})
		return true
	}); err != nil {
		return nil, err
	}
	if err := s.IterateTunnels(func(p netip.Prefix, ip netip.Addr) bool {
		d.Tunnels = append(d.Tunnels, Tunnel{PodCIDR: p, NodeIP: ip})
		return true
	}); err != nil {
		return nil, err
	}
	if err := s.IterateEndpoints(func(ip netip.Addr, v maps.EndpointValue) bool {
		d.Endpoints = append(d.Endpoints, Endpoint{Address: ip, Ifindex: v.Ifindex, MAC: fmt.Sprintf("%x:%x:%x:%x:%x:%x", v.MAC[0], v.MAC[1], v.MAC[2], v.MAC[3], v.MAC[4], v.MAC[5])})
		return true
	}); err != nil {
		return nil, err
	}
	addrs, err := s.NodeAddrs4()
	if err != nil {
		return nil, err
	}
	d.NodeAddrs = addrs
	if err := s.IterateConntrack(func(k maps.ConntrackKey, v maps.ConntrackValue) bool {
		d.Conntrack = append(d.Conntrack, conntrackOf(k, v, now))
		return true
	}); err != nil {
		return nil, err
	}
	if err := s.IterateAffinity(func(k maps.AffinityKey, v maps.AffinityValue) bool {
		d.Affinity = append(d.Affinity, Affinity{ServiceID: k.ServiceID, Client: netip.AddrFrom4(k.Client),
			Backend: BackendOf(v.Backend), IdleFor: Duration(int64(now) - int64(v.LastUsed))})
		return true
	}); err != nil {
		return nil, err
	}
	if c, err := s.ReadMetrics(); err == nil {
		for n, m := range c.Verdicts {
			d.Verdicts[n] = m.Packets
		}
		for n, m := range c.Drops {
			d.Drops[n] = m.Packets
		}
	} else {
		return nil, err
	}
	fill := []struct {
		name    string
		m       *ebpf.Map
		entries int
	}{
		{"kd_services", s.Services, len(d.Frontends)}, {"kd_backends", s.Backends, len(d.Backends)},
		{"kd_conntrack", s.Conntrack, len(d.Conntrack)}, {"kd_affinity", s.Affinity, len(d.Affinity)},
		{"kd_tunnel", s.Tunnel, len(d.Tunnels)}, {"kd_endpoints", s.Endpoints, len(d.Endpoints)},
	}
	for _, f := range fill {
		d.Maps = append(d.Maps, MapFill{Name: f.name, Entries: f.entries, Capacity: int(f.m.MaxEntries())})
	}
	d.Sort()
	return d, nil
}

func conntrackOf(k maps.ConntrackKey, v maps.ConntrackValue, now uint64) Conntrack {
	c := Conntrack{Direction: "forward", Protocol: ProtoName(k.Proto),
		Source:      netip.AddrPortFrom(netip.AddrFrom4(k.SrcAddr), k.SrcPort),
		Destination: netip.AddrPortFrom(netip.AddrFrom4(k.DstAddr), k.DstPort),
		NAT:         netip.AddrPortFrom(netip.AddrFrom4(v.NATAddr), v.NATPort),
		TunnelPeer:  addrOrInvalid(v.TunnelPeer), Client: addrOrInvalid(v.ClientAddr), ServiceID: v.ServiceID,
		Flags: flagNames(v.Flags, ctFlagNames), ExpiresIn: Duration(int64(v.Expires) - int64(now))}
	if k.Dir == maps.CTReply {
		c.Direction = "reply"
	}
	if k.Proto == maps.ProtoTCP {
		c.State = flagNames(v.TCPState, tcpStateNames)
	}
	return c
}

// Sort puts every list in a stable order (frontends by address, port and protocol; backends by table
// and slot), so two dumps of the same state print alike.
func (d *Dump) Sort() {
	slices.SortFunc(d.Frontends, func(a, b Frontend) int {
		if c := a.Address.Compare(b.Address); c != 0 {
			return c
		}
		if a.Port != b.Port {
			return cmp.Compare(a.Port, b.Port)
		}
		return strings.Compare(a.Protocol+a.Scope, b.Protocol+b.Scope)
	})
	slices.SortFunc(d.Backends, func(a, b BackendSlot) int {
		if a.ServiceID != b.ServiceID {
			return cmp.Compare(a.ServiceID, b.ServiceID)
		}
		if a.Table != b.Table {
			return strings.Compare(a.Table, b.Table)
		}
		return cmp.Compare(a.Slot, b.Slot)
	})
	slices.SortFunc(d.Tunnels, func(a, b Tunnel) int { return a.PodCIDR.Addr().Compare(b.PodCIDR.Addr()) })
	slices.SortFunc(d.Endpoints, func(a, b Endpoint) int { return a.Address.Compare(b.Address) })
	slices.SortFunc(d.Conntrack, func(a, b Conntrack) int {
		if c := a.Source.Compare(b.Source); c != 0 {
			return c
		}
		return a.Destination.Compare(b.Destination)
	})
	slices.SortFunc(d.Affinity, func(a, b Affinity) int { return a.Client.Compare(b.Client) })
}

// SlotsOf returns the backends of service id in table ("all" or "local"), in slot order.
func (d *Dump) SlotsOf(id uint32, table string) []BackendSlot {
	var out []BackendSlot
	for _, b := range d.Backends {
		if b.ServiceID == id && b.Table == table {
			out = append(out, b)
		}
	}
	return out
}

// Attachment is where one program is attached (the loader's view).
type Attachment = loader.Attachment
