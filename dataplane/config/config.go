// Package config is the agent's configuration file, written by the Helm chart's ConfigMap from the
// cluster spec's networking and dataplane sections and read by `kubedirect agent --config`.
package config

import (
	"bytes"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// DefaultPath is where the chart mounts the agent's configuration.
const DefaultPath = "/etc/kubedirect/config.yaml"

// Config is the agent's configuration. Field meanings and defaults follow the cluster spec.
type Config struct {
	// PodCIDR is the cluster's pod range; each node's slice comes from its Node.spec.podCIDR.
	PodCIDR string `yaml:"podCIDR" json:"podCIDR"`
	// ServiceCIDR is the ClusterIP range.
	ServiceCIDR string `yaml:"serviceCIDR" json:"serviceCIDR"`
	// Encapsulation is vxlan.
	Encapsulation string `yaml:"encapsulation" json:"encapsulation"`
	// VXLANPort is the UDP port of the overlay. Default: 8472.
	VXLANPort int `yaml:"vxlanPort" json:"vxlanPort"`
	// ExternalServiceMode is tunnel or dsr, the default for Services without the
	// kubedirect.io/external-service-mode annotation.
	ExternalServiceMode string `yaml:"externalServiceMode" json:"externalServiceMode"`
	// NodePortRange is "FIRST-LAST".
	NodePortRange string `yaml:"nodePortRange" json:"nodePortRange"`
	// MTU of pod interfaces; 0 means the underlay's MTU minus 50 (VXLAN overhead).
	MTU int `yaml:"mtu" json:"mtu"`
	// NonMasqueradeCIDRs are the destinations pod traffic reaches with the pod's own address (as
	// ip-masq-agent's nonMasqueradeCIDRs); traffic from this node's pods to anything else leaves with
	// the node's address. Default: [PodCIDR]. 0.0.0.0/0 turns masquerading off.
	NonMasqueradeCIDRs []string `yaml:"nonMasqueradeCIDRs,omitempty" json:"nonMasqueradeCIDRs,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"logLevel" json:"logLevel"`
	// MapSizes are the BPF map capacities.
	MapSizes MapSizes `yaml:"mapSizes" json:"mapSizes"`
	// HealthAddr is where /healthz, /readyz, /metrics and /status are served. Default: ":9890".
	HealthAddr string `yaml:"healthAddr" json:"healthAddr"`
	// ProxyHealthAddr is where kube-proxy's node health endpoint (/healthz, /livez) is served, which
	// cloud load balancers probe; "none" turns it off. Default: ":10256" (kube-proxy's port).
	ProxyHealthAddr string `yaml:"proxyHealthAddr,omitempty" json:"proxyHealthAddr,omitempty"`
	// BPFFSPath is the directory the maps are pinned under. Default: /sys/fs/bpf/kubedirect.
	BPFFSPath string `yaml:"bpffsPath" json:"bpffsPath"`
	// Device is the node NIC the NodePort programs attach to. Default: the interface holding the Node's
	// InternalIP.
	Device string `yaml:"device,omitempty" json:"device,omitempty"`
	// CNIDataDir is shared with the CNI plugin: its IPAM files (the pods the agent programs) and the
	// node state the agent writes for it. Default: /run/kubedirect.
	CNIDataDir string `yaml:"cniDataDir,omitempty" json:"cniDataDir,omitempty"`
	// CgroupPath is the cgroup v2 directory the socket hooks (host-network clients to ClusterIPs) attach
	// to; "none" disables them. Default: the cgroup2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified).
	CgroupPath string `yaml:"cgroupPath,omitempty" json:"cgroupPath,omitempty"`
}

// MapSizes are the BPF map capacities.
type MapSizes struct {
	Services  int `yaml:"services" json:"services"`
	Backends  int `yaml:"backends" json:"backends"`
	Conntrack int `yaml:"conntrack" json:"conntrack"`
}

// Defaults used where a field is unset.
const (
	DefaultVXLANPort  = 8472
	DefaultHealthAddr = ":9890"
	// DefaultProxyHealthAddr is kube-proxy's healthz port.
	DefaultProxyHealthAddr = ":10256"
	DefaultBPFFSPath       = "/sys/fs/bpf/kubedirect"
	DefaultCNIDataDir      = "/run/kubedirect"
)

// SetDefaults fills unset fields.
func (c *Config) SetDefaults() {
	if c.Encapsulation == "" {
		c.Encapsulation = "vxlan"
	}
	if c.VXLANPort == 0 {
		c.VXLANPort = DefaultVXLANPort
	}
	if c.ExternalServiceMode == "" {
		c.ExternalServiceMode = "tunnel"
	}
	if c.NodePortRange == "" {
		c.NodePortRange = "30000-32767"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
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
	if len(c.NonMasqueradeCIDRs) == 0 && c.PodCIDR != "" {
		c.NonMasqueradeCIDRs = []string{c.PodCIDR}
	}
	if c.MapSizes.Services == 0 {
		c.MapSizes.Services = 65536
	}
	if c.MapSizes.Backends == 0 {
		c.MapSizes.Backends = 65536
	}
	if c.MapSizes.Conntrack == 0 {
		c.MapSizes.Conntrack = 262144
	}
}

// Load reads and defaults the configuration at path; unknown fields are errors.
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
	return &c, nil
}
