// Package config is the agent's configuration file, written by the Helm chart's ConfigMap from the
// cluster spec's networking and dataplane sections and read by `kubedirect agent --config`.
//
// Configuration flows one way, typed at every step: spec.Cluster (defaulted by spec.SetDefaults) ->
// FromSpec -> the chart's values (install.ChartValues, whose config section is this Config) -> the
// ConfigMap -> Load. The defaults the spec shares with the agent (modes, node port range, log level,
// map sizes) are the spec's constants; the agent-only ones are here.
package config

import (
	"bytes"
	"fmt"
	"os"

	"github.com/kubedirect/kubedirect/provision/spec"
	"go.yaml.in/yaml/v3"
)

// DefaultPath is where the chart mounts the agent's configuration.
const DefaultPath = "/etc/kubedirect/config.yaml"

// Config is the agent's configuration. Field meanings and defaults follow the cluster spec.
//
// The yaml tags name the agent's file; the json tags name the chart's values.config, which are the same
// keys except healthAddr and proxyHealthAddr (the chart derives them from healthPort and proxyHealthPort).
type Config struct {
	// PodCIDR is the cluster's pod range; each node's slice comes from its Node.spec.podCIDR.
	PodCIDR string `yaml:"podCIDR" json:"podCIDR"`
	// ServiceCIDR is the ClusterIP range.
	ServiceCIDR string `yaml:"serviceCIDR" json:"serviceCIDR"`
	// Encapsulation is vxlan.
	Encapsulation spec.Encapsulation `yaml:"encapsulation" json:"encapsulation"`
	// VXLANPort is the UDP port of the overlay. Default: 8472.
	VXLANPort int `yaml:"vxlanPort" json:"vxlanPort"`
	// ExternalServiceMode is tunnel or dsr, the default for Services without the
	// kubedirect.io/external-service-mode annotation.
	ExternalServiceMode spec.ExternalServiceMode `yaml:"externalServiceMode" json:"externalServiceMode"`
	// NodePortRange is "FIRST-LAST".
	NodePortRange string `yaml:"nodePortRange" json:"nodePortRange"`
	// MTU of pod interfaces; 0 means the underlay's MTU minus 50 (VXLAN overhead).
	MTU int `yaml:"mtu" json:"mtu"`
	// NonMasqueradeCIDRs are the destinations pod traffic reaches with the pod's own address (as
	// ip-masq-agent's nonMasqueradeCIDRs); traffic from this node's pods to anything else leaves with
	// the node's address. Default: [PodCIDR]. 0.0.0.0/0 turns masquerading off.
	NonMasqueradeCIDRs []string `yaml:"nonMasqueradeCIDRs,omitempty" json:"nonMasqueradeCIDRs"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"logLevel" json:"logLevel"`
	// MapSizes are the BPF map capacities.
	MapSizes MapSizes `yaml:"mapSizes" json:"mapSizes"`
	// XDP is native (xdp_netdev in front of tc on the NIC, where its driver has native XDP) or off.
	XDP spec.XDPMode `yaml:"xdp" json:"xdp"`
	// HealthAddr is where /healthz, /readyz, /metrics and /status are served. Default: ":9890".
	HealthAddr string `yaml:"healthAddr" json:"-"`
	// ProxyHealthAddr is where kube-proxy's node health endpoint (/healthz, /livez) is served, which
	// cloud load balancers probe; "none" turns it off. Default: ":10256" (kube-proxy's port).
	ProxyHealthAddr string `yaml:"proxyHealthAddr,omitempty" json:"-"`
	// BPFFSPath is the directory the maps are pinned under. Default: /sys/fs/bpf/kubedirect.
	BPFFSPath string `yaml:"bpffsPath" json:"bpffsPath"`
	// Device is the node NIC the NodePort programs attach to. Default: the interface holding the Node's
	// InternalIP.
	Device string `yaml:"device,omitempty" json:"device"`
	// CNIDataDir is shared with the CNI plugin: its IPAM files (the pods the agent programs) and the
	// node state the agent writes for it. Default: /run/kubedirect.
	CNIDataDir string `yaml:"cniDataDir,omitempty" json:"cniDataDir"`
	// CgroupPath is the cgroup v2 directory the socket hooks (host-network clients to ClusterIPs) attach
	// to; "none" disables them. Default: the cgroup2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified).
	CgroupPath string `yaml:"cgroupPath,omitempty" json:"cgroupPath"`
	// EventSample is the default flow event rate: one event per EventSample new flows, plus every drop
	// and reject; -1 turns events off. `kubedirect monitor --sample N` raises it for a session.
	// Default: 1 (every new flow).
	EventSample int `yaml:"eventSample,omitempty" json:"eventSample,omitempty"`
	// FlowHistory is how many flow events the agent keeps for `kubedirect monitor --since`. Default: 4096.
	FlowHistory int `yaml:"flowHistory,omitempty" json:"flowHistory,omitempty"`
}

// MapSizes are the capacities of the agent's BPF maps, in entries (Events in bytes). The loader creates
// every map with these sizes (the ebpf tags name the maps); the max_entries in bpf/ are placeholders. The spec and the chart expose
// Services, Backends and Conntrack; the others are tuned here only.
type MapSizes struct {
	// Services is the number of service frontends (address, port, protocol).
	Services uint32 `yaml:"services" json:"services" ebpf:"kd_services"`
	// Backends is the number of service backends over all services.
	Backends uint32 `yaml:"backends" json:"backends" ebpf:"kd_backends"`
	// Conntrack is the number of tracked flows (LRU).
	Conntrack uint32 `yaml:"conntrack" json:"conntrack" ebpf:"kd_conntrack"`
	// ConntrackNew is the number of flows not confirmed yet (TCP before the client's ACK, UDP before an
	// answer), kept apart so that a flood of them cannot evict established flows (LRU).
	ConntrackNew uint32 `yaml:"conntrackNew,omitempty" json:"conntrackNew,omitempty" ebpf:"kd_ct_new"`
	// Affinity is the number of ClientIP session affinity entries (LRU).
	Affinity uint32 `yaml:"affinity,omitempty" json:"affinity,omitempty" ebpf:"kd_affinity"`
	// Tunnel is the number of remote nodes' pod CIDRs reachable through the overlay.
	Tunnel uint32 `yaml:"tunnel,omitempty" json:"tunnel,omitempty" ebpf:"kd_tunnel"`
	// Endpoints is the number of this node's pods.
	Endpoints uint32 `yaml:"endpoints,omitempty" json:"endpoints,omitempty" ebpf:"kd_endpoints"`
	// NodeAddrs is the number of this node's own addresses (where NodePorts answer).
	NodeAddrs uint32 `yaml:"nodeAddrs,omitempty" json:"nodeAddrs,omitempty" ebpf:"kd_node_addrs"`
	// Events is the size of the event ring buffer in bytes: a power of two and a multiple of the page size.
	Events uint32 `yaml:"events,omitempty" json:"events,omitempty" ebpf:"kd_events"`
	// SockNAT is the number of host-network sockets whose service translation is kept, forward (UDP)
	// and reverse, by socket cookie (LRU).
	SockNAT uint32 `yaml:"sockNAT,omitempty" json:"sockNAT,omitempty" ebpf:"kd_sock_nat"`
	// SockAffinity is the number of host-network clients' session affinity entries (LRU).
	SockAffinity uint32 `yaml:"sockAffinity,omitempty" json:"sockAffinity,omitempty" ebpf:"kd_sock_affinity"`
	// Frags is the number of fragmented IPv4 datagrams whose later fragments follow the first one's
	// translation (LRU).
	Frags uint32 `yaml:"frags,omitempty" json:"frags,omitempty" ebpf:"kd_frags"`
}

// DefaultMapSizes are the map capacities where the configuration leaves one unset.
func DefaultMapSizes() MapSizes {
	return MapSizes{
		Services:     spec.DefaultServicesMapSize,
		Backends:     spec.DefaultBackendsMapSize,
		Conntrack:    spec.DefaultConntrackMapSize,
		ConntrackNew: 65536,
		Affinity:     65536,
		Tunnel:       4096,
		Endpoints:    1024,
		NodeAddrs:    64,
		Events:       1 << 20,
		SockNAT:      65536,
		SockAffinity: 65536,
		Frags:        8192,
	}
}

// SetDefaults fills every zero capacity from DefaultMapSizes.
func (s *MapSizes) SetDefaults() {
	d := DefaultMapSizes()
	for _, f := range []struct {
		p *uint32
		v uint32
	}{
		{&s.Services, d.Services}, {&s.Backends, d.Backends}, {&s.Conntrack, d.Conntrack}, {&s.ConntrackNew, d.ConntrackNew},
		{&s.Affinity, d.Affinity}, {&s.Tunnel, d.Tunnel}, {&s.Endpoints, d.Endpoints},
		{&s.NodeAddrs, d.NodeAddrs}, {&s.Events, d.Events}, {&s.SockNAT, d.SockNAT},
		{&s.SockAffinity, d.SockAffinity}, {&s.Frags, d.Frags},
	} {
		if *f.p == 0 {
			*f.p = f.v
		}
	}
}

// Defaults of the agent-only fields, used where a field is unset.
const (
	DefaultVXLANPort  = 8472
	DefaultHealthAddr = ":9890"
	// DefaultProxyHealthAddr is kube-proxy's healthz port.
	DefaultProxyHealthAddr = ":10256"
	DefaultBPFFSPath       = "/sys/fs/bpf/kubedirect"
	DefaultCNIDataDir      = "/run/kubedirect"
	DefaultEventSample     = 1
	DefaultFlowHistory     = 4096
)

// FromSpec is the agent configuration of the cluster spec c (defaulted): its networking and dataplane
// sections, and the agent-only fields the chart sets (VXLAN port, pin and CNI directories). The fields
// the agent derives at run time (MTU, NonMasqueradeCIDRs, Device, CgroupPath, the health addresses) are
// left unset for SetDefaults and the node.
func FromSpec(c *spec.Cluster) Config {
	n, d := c.Spec.Networking, c.Spec.Dataplane
	return Config{
		PodCIDR:             n.PodCIDR,
		ServiceCIDR:         n.ServiceCIDR,
		Encapsulation:       n.Encapsulation,
		VXLANPort:           DefaultVXLANPort,
		ExternalServiceMode: n.ExternalServiceMode,
		NodePortRange:       n.NodePortRange,
		LogLevel:            d.LogLevel,
		XDP:                 d.XDP,
		MapSizes: MapSizes{
			Services:  uint32(d.MapSizes.Services),
			Backends:  uint32(d.MapSizes.Backends),
			Conntrack: uint32(d.MapSizes.Conntrack),
		},
		BPFFSPath:  DefaultBPFFSPath,
		CNIDataDir: DefaultCNIDataDir,
	}
}

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Encapsulation == "" {
		c.Encapsulation = spec.DefaultEncapsulation
	}
	if c.VXLANPort == 0 {
		c.VXLANPort = DefaultVXLANPort
	}
	if c.ExternalServiceMode == "" {
		c.ExternalServiceMode = spec.DefaultExternalServiceMode
	}
	if c.NodePortRange == "" {
		c.NodePortRange = spec.DefaultNodePortRange
	}
	if c.LogLevel == "" {
		c.LogLevel = spec.DefaultLogLevel
	}
	if c.XDP == "" {
		c.XDP = spec.DefaultXDP
	}
	if c.HealthAddr == "" {
		c.HealthAddr = DefaultHealthAddr
	}
	if c.ProxyHealthAddr == "" {
		c.ProxyHealthAddr = DefaultProxyHealthAddr
	}
	if c.BPFFSPath == "" {
		c.BPFFSPath = DefaultBPFFSPath
	}
	if c.CNIDataDir == "" {
		c.CNIDataDir = DefaultCNIDataDir
	}
	if c.EventSample == 0 {
		c.EventSample = DefaultEventSample
	}
	if c.FlowHistory <= 0 {
		c.FlowHistory = DefaultFlowHistory
	}
	if len(c.NonMasqueradeCIDRs) == 0 && c.PodCIDR != "" {
		c.NonMasqueradeCIDRs = []string{c.PodCIDR}
	}
	c.MapSizes.SetDefaults()
}

// Load reads and defaults the configuration at path; unknown fields and an unknown external service
// mode are errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent config: %w", err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("parse agent config %s: %w", path, err)
	}
	c.SetDefaults()
	if !c.ExternalServiceMode.Valid() {
		return nil, fmt.Errorf("parse agent config %s: externalServiceMode %q is not one of %v", path, c.ExternalServiceMode, spec.ExternalServiceModes)
	}
	if !c.XDP.Valid() {
		return nil, fmt.Errorf("parse agent config %s: xdp %q is not one of %v", path, c.XDP, spec.XDPModes)
	}
	return &c, nil
}
