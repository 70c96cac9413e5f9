// Package maps mirrors the C structs of kubedirect's BPF maps (bpf/lib/common.h)
// field by field and offers typed helpers to read and write the pinned maps.
//
// Conventions shared with the C side: IPv4 addresses are stored in network
// byte order ([4]byte, as in the packet); ports are stored in host byte order
// (plain uint16). All structs are padded explicitly so Go and C agree on size.
package maps

import (
	"net/netip"
	"time"
)

// NamePrefix starts the name of every map (the C side's kd_ prefix); Set's tags hold the names.
const NamePrefix = "kd_"

// IP protocol numbers used in keys.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// Service scopes (ServiceKey.Scope).
const (
	// ScopeCluster marks ClusterIP frontends, matched for pods and host-network sockets.
	ScopeCluster uint8 = 0
	// ScopeExternal marks NodePort, externalIP and LoadBalancer frontends, matched on
	// the NIC and the overlay. A NodePort uses Addr 0 (any node address).
	ScopeExternal uint8 = 1
)

// Service flags (ServiceValue.Flags).
const (
	SvcExternalLocal uint32 = 1 << 0 // externalTrafficPolicy: Local
	SvcInternalLocal uint32 = 1 << 1 // internalTrafficPolicy: Local
	SvcAffinity      uint32 = 1 << 2 // sessionAffinity: ClientIP (AffinityTimeout seconds)
	SvcDSR           uint32 = 1 << 3 // external mode dsr
	SvcTunnel        uint32 = 1 << 4 // external mode tunnel; neither flag: Config.Mode
	SvcReject        uint32 = 1 << 5 // no endpoints: TCP RST / ICMP port unreachable (else drop)
)

// Backend flags (BackendValue.Flags).
const (
	BackendLocal   uint8 = 1 << 0 // on this node
	BackendRemote  uint8 = 1 << 1 // on NodeIP
	BackendHostNet uint8 = 1 << 2 // the address is a node address (host-network endpoint)
)

// Backend tables (BackendKey.Table): every service has slots 0..Count-1 in
// TableAll and slots 0..LocalCount-1 (this node's backends only) in TableLocal.
const (
	TableAll   uint8 = 0
	TableLocal uint8 = 1
)

// Conntrack directions (ConntrackKey.Dir).
const (
	CTForward uint8 = 0 // client -> frontend
	CTReply   uint8 = 1 // backend -> client
)

// Conntrack flags (ConntrackValue.Flags).
const (
	CTCluster        uint16 = 1 << 0 // ClusterIP flow, DNAT here
	CTNodePortLocal  uint16 = 1 << 1 // external frontend, local backend
	CTNodePortRemote uint16 = 1 << 2 // external frontend, forwarded to TunnelPeer
	CTNodePortFwd    uint16 = 1 << 3 // forwarded to us by ingress node TunnelPeer
	CTDSR            uint16 = 1 << 4 // reply leaves through this node's NIC
	CTHairpin        uint16 = 1 << 5 // client is its own backend; source SNATed
	CTHostNet        uint16 = 1 << 6 // backend is a host-network endpoint
	CTNew            uint16 = 1 << 7 // not confirmed yet: the entry is in kd_ct_new
)

// TCP state bits (ConntrackValue.TCPState).
const (
	TCPSyn         uint8 = 1 << 0
	TCPEstablished uint8 = 1 << 1
	TCPClosing     uint8 = 1 << 2 // both sides sent FIN, or RST: short lifetime
	TCPFinClient   uint8 = 1 << 3 // the client sent FIN (half-closed)
	TCPFinBackend  uint8 = 1 << 4 // the backend sent FIN (half-closed)
	TCPSeenReply   uint8 = 1 << 5 // a forward-only entry saw the backend's side
)

// Conntrack lifetimes (lib/common.h enum kd_timeout).
const (
	CTSynTimeout     = 60 * time.Second
	CTTCPTimeout     = 21600 * time.Second
	CTCloseTimeout   = 10 * time.Second
	CTFinWaitTimeout = 60 * time.Second // forward-only entry after the client's FIN
	CTUDPTimeout     = 120 * time.Second
)

// External service modes (Config.Mode).
const (
	ModeTunnel uint8 = 0
	ModeDSR    uint8 = 1
)

// DebugTrace in Config.Debug emits an Event (Verdict, TunnelPeer, target
// ifindex in ServiceID) for every encapsulation. Costly: tests and debugging.
const DebugTrace uint8 = 1 << 0

// DefaultHairpinAddr is the source a pod sees when it reaches itself through
// a Service (link-local, never routed off the node).
var DefaultHairpinAddr = netip.MustParseAddr("169.254.42.1")

// ServiceKey is struct kd_svc_key.
type ServiceKey struct {
	Addr  [4]byte // frontend; zero for a NodePort (any node address)
	Port  uint16
	Proto uint8
	Scope uint8
}

// ServiceValue is struct kd_svc_val.
type ServiceValue struct {
	ID              uint32 // backend table id (BackendKey.ServiceID)
	Count           uint16 // slots in TableAll
	LocalCount      uint16 // slots in TableLocal
	Flags           uint32 // Svc*
	AffinityTimeout uint32 // seconds
}

// BackendKey is struct kd_backend_key.
type BackendKey struct {
	ServiceID uint32
	Slot      uint16
	Table     uint8
	Pad       uint8
}

// BackendValue is struct kd_backend_val.
type BackendValue struct {
	Addr   [4]byte
	NodeIP [4]byte // node running the backend; zero when local
	Port   uint16
	Flags  uint8 // Backend*
	Pad    uint8
}

// ConntrackKey is struct kd_ct_key.
type ConntrackKey struct {
	SrcAddr [4]byte
	DstAddr [4]byte
	SrcPort uint16
	DstPort uint16
	Proto   uint8
	Dir     uint8 // CTForward / CTReply
	Pad     uint16
}

// ConntrackValue is struct kd_ct_val.
type ConntrackValue struct {
	Expires    uint64  // CLOCK_MONOTONIC nanoseconds
	NATAddr    [4]byte // forward: backend; reply: frontend (new source)
	TunnelPeer [4]byte // node the flow is forwarded to / came from
	ClientAddr [4]byte // reply of a hairpin flow: the real client
	ServiceID  uint32
	NATPort    uint16
	Flags      uint16 // CT*
	TCPState   uint8  // TCP*
	Pad        uint8
	// ClientPort is 0 when the client's port is kept. Forward: the source
	// port the client's packets leave with; reply: the client's own port.
	// Set when another flow held the reply tuple.
	ClientPort uint16
}

// AffinityKey is struct kd_affinity_key.
type AffinityKey struct {
	ServiceID uint32
	Client    [4]byte
}

// AffinityValue is struct kd_affinity_val.
type AffinityValue struct {
	LastUsed uint64 // CLOCK_MONOTONIC nanoseconds
	Backend  BackendValue
	Slot     uint16 // where Backend was picked: the datapath checks it is still there
	Table    uint8  // Table* of Slot
	Pad      uint8
}

// TunnelKey is struct kd_tunnel_key (an LPM trie key).
type TunnelKey struct {
	PrefixLen uint32
	Addr      [4]byte
}

// TunnelValue is struct kd_tunnel_val.
type TunnelValue struct {
	NodeIP [4]byte
	Flags  uint32
}

// EndpointValue is struct kd_endpoint_val, keyed by the pod's IPv4 address.
type EndpointValue struct {
	Ifindex uint32 // host side of the pod's veth
	Flags   uint32
	MAC     [6]byte // the pod's MAC
	HostMAC [6]byte // the host veth's MAC
}

// Config is struct kd_config, the single entry of kd_config.
type Config struct {
	NodeIP        [4]byte
	PodCIDR       [4]byte
	PodMask       [4]byte
	HairpinAddr   [4]byte
	VXLANIfindex  uint32
	NetdevIfindex uint32
	EventSample   uint32 // default: 0 no flow events; N one per N new flows, every drop and reject
	VXLANPort     uint16
	Mode          uint8 // ModeTunnel / ModeDSR, for services without SvcDSR/SvcTunnel
	Debug         uint8 // DebugTrace: an event for every redirect (tests, troubleshooting)
	// HostNetns is the cookie of the node's network namespace (SO_NETNS_COOKIE): sockets
	// there reach NodePorts on 127.0.0.0/8, as kube-proxy's localhost NodePorts. 0: none.
	HostNetns uint64
	// TunnelMTU is the largest inner IPv4 packet the overlay carries without fragmenting (the NIC's MTU
	// minus the 50 bytes of VXLAN): larger DF packets get ICMP fragmentation needed, TCP SYNs into the
	// tunnel have their MSS clamped to it. 0 disables both.
	TunnelMTU uint16
	Pad       uint16
	// SampleOverride replaces EventSample while MonotonicNow() < OverrideUntil: a monitor session's
	// rate, which lapses by itself if the session dies.
	SampleOverride uint32
	OverrideUntil  uint64 // CLOCK_MONOTONIC ns
}

// Metric is struct kd_metric (one per CPU in the map).
type Metric struct {
	Packets uint64
	Bytes   uint64
}

// Event is struct kd_event, one record of the kd_events ring buffer.
type Event struct {
	Timestamp  uint64
	SrcAddr    [4]byte
	DstAddr    [4]byte
	NATAddr    [4]byte
	TunnelPeer [4]byte
	ServiceID  uint32
	SrcPort    uint16
	DstPort    uint16
	NATPort    uint16
	Proto      uint8
	Verdict    uint8 // Metric index of the verdict
	Reason     uint8 // Metric index of the drop reason, or 0
	Prog       uint8 // Prog*
	Pad        uint16
}

// Programs that emit events (Event.Prog).
const (
	ProgFromContainer uint8 = 1 + iota
	ProgToContainer
	ProgFromNetdev
	ProgToNetdev
	ProgFromOverlay
	ProgToOverlay
	ProgSock
)

// Kinds of kd_sock_nat entries (SockKey.Dir).
const (
	// SockForward: socket + frontend -> backend (UDP keeps one backend per socket).
	SockForward uint8 = 0
	// SockReverse: socket + backend -> frontend (what recvmsg4 / getpeername4 show).
	SockReverse uint8 = 1
)

// SockKey is struct kd_sock_key.
type SockKey struct {
	Cookie uint64  // socket cookie
	Addr   [4]byte // SockForward: frontend; SockReverse: backend
	Port   uint16
	Dir    uint8 // SockForward / SockReverse
	Pad    uint8
}

// SockValue is struct kd_sock_val.
type SockValue struct {
	FrontendAddr [4]byte
	BackendAddr  [4]byte
	FrontendPort uint16
	BackendPort  uint16
	Slot         uint16 // SockForward: the backend's slot in Table
	Table        uint8  // SockForward: TableAll or TableLocal, where it was picked
	Pad          uint8
}

// SockAffinityKey is struct kd_sock_aff_key: ClientIP affinity of the
// socket hooks, whose client is a network namespace (value: AffinityValue).
type SockAffinityKey struct {
	Netns     uint64 // network namespace cookie
	ServiceID uint32
	Pad       uint32
}

// Metric indexes: verdicts, then drop reasons (enum in bpf/lib/common.h).
const (
	MetricPass = iota
	MetricDNAT
	MetricRevNAT
	MetricLocal
	MetricEncap
	MetricFIBOut
	MetricReject
	MetricDrop
	// MetricEventLost counts flow events the full kd_events ring buffer could not take.
	MetricEventLost = 15
)

// Conntrack bookkeeping metric indexes: the entries (in Metric.Packets) the datapath added to and
// removed from kd_ct_new and kd_conntrack. ConntrackEvictions turns them into the LRU evictions.
const (
	MetricCTNewAdded = 9 + iota
	MetricCTNewRemoved
	MetricCTAdded
	MetricCTRemoved
)

// Drop reasons (metric indexes).
const (
	DropMalformed = 16 + iota
	DropNoBackend
	DropNoLocalBackend
	DropNoTunnel
	DropFIB
	DropRewrite
	DropCTFull
	DropFragment
	DropCTCollision
	DropTooBig
	// MetricSlots is the size of kd_metrics.
	MetricSlots = 32
)

// VerdictNames names the verdict metric indexes (Prometheus label values).
var VerdictNames = map[int]string{
	MetricPass: "pass", MetricDNAT: "dnat", MetricRevNAT: "revnat", MetricLocal: "local",
	MetricEncap: "encap", MetricFIBOut: "fib_out", MetricReject: "reject", MetricDrop: "drop",
}

// DropReasonNames names the drop reason metric indexes.
var DropReasonNames = map[int]string{
	DropMalformed: "malformed", DropNoBackend: "no_backend", DropNoLocalBackend: "no_local_backend",
	DropNoTunnel: "no_tunnel", DropFIB: "fib", DropRewrite: "rewrite", DropCTFull: "ct_full",
	DropFragment: "fragment", DropCTCollision: "ct_collision", DropTooBig: "too_big",
}

// Addr4 returns a's 4 bytes (zero for an invalid or IPv6 address).
func Addr4(a netip.Addr) [4]byte {
	if !a.Is4() && !a.Is4In6() {
		return [4]byte{}
	}
	return a.Unmap().As4()
}

// NewServiceKey builds a service key; pass an invalid netip.Addr{} for the NodePort wildcard.
func NewServiceKey(addr netip.Addr, port uint16, proto, scope uint8) ServiceKey {
	return ServiceKey{Addr: Addr4(addr), Port: port, Proto: proto, Scope: scope}
}

// FragKey is struct kd_frag_key: a fragmented datagram as its fragments arrive.
type FragKey struct {
	SrcAddr [4]byte
	DstAddr [4]byte
	ID      uint16 // IP identification, network order
	Proto   uint8
	Pad     uint8
}

// FragValue is struct kd_frag_val: the first fragment's translation and route, for the later fragments.
type FragValue struct {
	Expires uint64 // CLOCK_MONOTONIC ns
	SrcAddr [4]byte
	DstAddr [4]byte
	Peer    [4]byte
	Action  uint8 // Frag*
	Pad     [3]uint8
}

// What the later fragments of a datagram get (FragValue.Action).
const (
	FragRoute uint8 = 0 // routed by destination, as an untranslated packet
	FragEncap uint8 = 1 // into the tunnel to Peer
	FragFIB   uint8 = 2 // out of a NIC towards the client
)

// FragTimeout is the lifetime of a kd_frags entry (the kernel's reassembly timeout).
const FragTimeout = 30 * time.Second
