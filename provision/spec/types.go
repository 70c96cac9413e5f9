// Package spec defines the kubedirect cluster spec (apiVersion kubedirect.io/v1alpha1, kind Cluster):
// its Go types, strict loading, defaulting and validation.
//
// Every field documents its default; SetDefaults fills them in and Validate reports every problem at once
// with its field path, as kOps does.
package spec

// APIVersion and Kind identify a kubedirect cluster spec document.
const (
	APIVersion = "kubedirect.io/v1alpha1"
	Kind       = "Cluster"
)

// Provider names where the cluster's machines come from.
type Provider string

// Providers kubedirect can create clusters on.
const (
	ProviderKind Provider = "kind"
	ProviderAWS  Provider = "aws"
)

// NodeRole is the Kubernetes role of every node of a group.
type NodeRole string

// Node roles.
const (
	RoleControlPlane NodeRole = "control-plane"
	RoleWorker       NodeRole = "worker"
)

// Encapsulation is how pod traffic crosses between nodes.
type Encapsulation string

// Encapsulations; only VXLAN is implemented.
const (
	EncapsulationVXLAN Encapsulation = "vxlan"
)

// ExternalServiceMode is how replies to NodePort (and external IP) traffic forwarded to another node
// leave the cluster.
type ExternalServiceMode string

// External service modes.
const (
	// ModeTunnel sends the reply back through the tunnel to the ingress node, which answers the client.
	ModeTunnel ExternalServiceMode = "tunnel"
	// ModeDSR answers the client directly from the backend's node (direct server return).
	ModeDSR ExternalServiceMode = "dsr"
)

// ExternalServiceModes are the valid external service modes.
var ExternalServiceModes = []ExternalServiceMode{ModeTunnel, ModeDSR}

// Valid reports whether m is one of ExternalServiceModes.
func (m ExternalServiceMode) Valid() bool { return m == ModeTunnel || m == ModeDSR }

// XDPMode is whether the agents put the NodePort fast path (xdp_netdev) in front of tc on the node's
// NIC.
type XDPMode string

// XDP modes.
const (
	// XDPNative attaches xdp_netdev in driver (native) mode where the NIC's driver has it; a NIC
	// without native XDP keeps tc alone, and the agent reports which one each interface got.
	XDPNative XDPMode = "native"
	// XDPOff runs tc alone and detaches an XDP program an earlier agent left.
	XDPOff XDPMode = "off"
)

// XDPModes are the valid XDP modes.
var XDPModes = []XDPMode{XDPNative, XDPOff}

// Valid reports whether m is one of XDPModes.
func (m XDPMode) Valid() bool { return m == XDPNative || m == XDPOff }

// Cluster is a kubedirect cluster spec document.
type Cluster struct {
	// APIVersion must be kubedirect.io/v1alpha1.
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	// Kind must be Cluster.
	Kind     string      `yaml:"kind" json:"kind"`
	Metadata ObjectMeta  `yaml:"metadata" json:"metadata"`
	Spec     ClusterSpec `yaml:"spec" json:"spec"`
}

// ObjectMeta names the cluster.
type ObjectMeta struct {
	// Name of the cluster: a DNS-1123 label of at most 40 characters. Required.
	Name string `yaml:"name" json:"name"`
}

// ClusterSpec is the desired cluster.
type ClusterSpec struct {
	// Provider is kind or aws. Required.
	Provider Provider `yaml:"provider" json:"provider"`
	// KubernetesVersion is the version of the nodes, vMAJOR.MINOR.PATCH. Default: v1.34.4.
	KubernetesVersion string `yaml:"kubernetesVersion,omitempty" json:"kubernetesVersion,omitempty"`
	// NodeGroups are the sets of identical nodes. Default: one control-plane node and two workers.
	NodeGroups []NodeGroup `yaml:"nodeGroups,omitempty" json:"nodeGroups,omitempty"`
	// Networking is the pod and service addressing and the dataplane's modes.
	Networking Networking `yaml:"networking,omitempty" json:"networking,omitempty"`
	// Dataplane tunes the kubedirect agent.
	Dataplane Dataplane `yaml:"dataplane,omitempty" json:"dataplane,omitempty"`
	// Kind holds settings of the kind provider; only allowed with provider kind.
	Kind *KindSpec `yaml:"kind,omitempty" json:"kind,omitempty"`
	// AWS holds settings of the aws provider; required with provider aws, refused otherwise.
	AWS *AWSSpec `yaml:"aws,omitempty" json:"aws,omitempty"`
}

// NodeGroup is a set of identical nodes.
type NodeGroup struct {
	// Name of the group: a DNS-1123 label, unique in the cluster. Required.
	Name string `yaml:"name" json:"name"`
	// Role is control-plane or worker. Default: worker.
	Role NodeRole `yaml:"role,omitempty" json:"role,omitempty"`
	// Count is the number of nodes, at least 1. Required.
	Count int `yaml:"count,omitempty" json:"count,omitempty"`
	// MachineType is the EC2 instance type (aws only). Default: t3.medium.
	MachineType string `yaml:"machineType,omitempty" json:"machineType,omitempty"`
}

// Networking is the cluster's addressing and dataplane modes.
type Networking struct {
	// PodCIDR is the IPv4 range pods get addresses from; each node gets a /24 of it. Default: 10.244.0.0/16.
	PodCIDR string `yaml:"podCIDR,omitempty" json:"podCIDR,omitempty"`
	// ServiceCIDR is the IPv4 range of ClusterIPs; must not overlap PodCIDR. Default: 10.96.0.0/16.
	ServiceCIDR string `yaml:"serviceCIDR,omitempty" json:"serviceCIDR,omitempty"`
	// Encapsulation of pod traffic between nodes: vxlan (UDP 8472). Default: vxlan.
	Encapsulation Encapsulation `yaml:"encapsulation,omitempty" json:"encapsulation,omitempty"`
	// ExternalServiceMode is tunnel or dsr for NodePort replies from another node; a Service may override
	// it with the annotation kubedirect.io/external-service-mode. Default: tunnel.
	ExternalServiceMode ExternalServiceMode `yaml:"externalServiceMode,omitempty" json:"externalServiceMode,omitempty"`
	// NodePortRange is the range of NodePorts, "FIRST-LAST". Default: 30000-32767.
	NodePortRange string `yaml:"nodePortRange,omitempty" json:"nodePortRange,omitempty"`
}

// Dataplane tunes the kubedirect agent and its BPF maps.
type Dataplane struct {
	// LogLevel of the agent: debug, info, warn or error. Default: info.
	LogLevel string `yaml:"logLevel,omitempty" json:"logLevel,omitempty"`
	// Image is a published image of kubedirect to run instead of the one the CLI builds of itself and
	// loads into the nodes. Default: empty (self-image).
	Image string `yaml:"image,omitempty" json:"image,omitempty"`
	// MapSizes are the capacities of the BPF maps.
	MapSizes MapSizes `yaml:"mapSizes,omitempty" json:"mapSizes,omitempty"`
	// XDP is native (NodePort traffic to another node's backend is forwarded at XDP where the NIC's
	// driver supports it, tc elsewhere) or off (tc only). Default: off.
	XDP XDPMode `yaml:"xdp,omitempty" json:"xdp,omitempty"`
}

// MapSizes are the capacities of the agent's BPF maps.
type MapSizes struct {
	// Services is the number of service frontends (address, port, protocol). Default: 65536.
	Services int `yaml:"services,omitempty" json:"services,omitempty"`
	// Backends is the number of service backends over all services. Default: 65536.
	Backends int `yaml:"backends,omitempty" json:"backends,omitempty"`
	// Conntrack is the number of tracked flows (LRU). Default: 262144.
	Conntrack int `yaml:"conntrack,omitempty" json:"conntrack,omitempty"`
}

// KindSpec holds settings of the kind provider.
type KindSpec struct {
	// NodeImage overrides the node image. Default: kindest/node:<kubernetesVersion>.
	NodeImage string `yaml:"nodeImage,omitempty" json:"nodeImage,omitempty"`
}

// AWSSpec holds settings of the aws provider.
type AWSSpec struct {
	// Region is the AWS region, e.g. eu-west-1. Required.
	Region string `yaml:"region" json:"region"`
	// Zones are availability zones of Region to spread nodes over. Default: <region>a.
	Zones []string `yaml:"zones,omitempty" json:"zones,omitempty"`
	// StateStore is where the cluster's state lives, s3://bucket[/prefix]. Required.
	StateStore string `yaml:"stateStore" json:"stateStore"`
	// VPCID uses an existing VPC instead of creating one. Default: empty (create a VPC).
	VPCID string `yaml:"vpcID,omitempty" json:"vpcID,omitempty"`
	// NetworkCIDR is the CIDR of the VPC kubedirect creates. Default: 172.20.0.0/16.
	NetworkCIDR string `yaml:"networkCIDR,omitempty" json:"networkCIDR,omitempty"`
	// SSHPublicKey is the path of the public key imported as the nodes' key pair. Default: none (no key).
	SSHPublicKey string `yaml:"sshPublicKey,omitempty" json:"sshPublicKey,omitempty"`
	// Access limits who may reach the cluster.
	Access AWSAccess `yaml:"access,omitempty" json:"access,omitempty"`
}

// AWSAccess lists the CIDRs allowed to reach the cluster from outside.
type AWSAccess struct {
	// API are the CIDRs allowed to reach the Kubernetes API (6443/tcp). Default: [0.0.0.0/0]; an empty list is refused.
	API []string `yaml:"api,omitempty" json:"api,omitempty"`
	// SSH are the CIDRs allowed to reach the nodes' SSH (22/tcp). Default: none.
	SSH []string `yaml:"ssh,omitempty" json:"ssh,omitempty"`
	// NodePort are the CIDRs allowed to reach the NodePort range (tcp and udp). Default: none.
	NodePort []string `yaml:"nodePort,omitempty" json:"nodePort,omitempty"`
}
