package aws

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"

	"github.com/kubedirect/kubedirect/provision/spec"
)

// model is what the provider derives from a spec: names, subnets, ports and node groups.
type model struct {
	spec          *spec.Cluster
	names         Names
	region        string
	zones         []string
	subnets       map[string]string // zone -> CIDR
	vpcCIDR       string
	existingVPC   string
	nodePortFirst uint16
	nodePortLast  uint16
	dsr           bool
	groups        []spec.NodeGroup
	sshKey        string // public key contents, "" for none
}

func newModel(c *spec.Cluster, sshKey string) (*model, error) {
	names, err := clusterNames(c)
	if err != nil {
		return nil, err
	}
	a := c.Spec.AWS
	first, last, err := spec.ParsePortRange(c.Spec.Networking.NodePortRange)
	if err != nil {
		return nil, fmt.Errorf("parse spec.networking.nodePortRange: %w", err)
	}
	m := &model{
		spec: c, names: names, region: a.Region,
		zones: a.Zones, vpcCIDR: a.NetworkCIDR, existingVPC: a.VPCID,
		nodePortFirst: first, nodePortLast: last,
		dsr:    c.Spec.Networking.ExternalServiceMode == spec.ModeDSR,
		groups: c.Spec.NodeGroups, sshKey: sshKey,
	}
	if len(m.zones) == 0 {
		m.zones = []string{a.Region + "a"}
	}
	if m.vpcCIDR == "" {
		m.vpcCIDR = spec.DefaultAWSNetworkCIDR
	}
	if n := m.controlPlanes(); n%2 == 0 {
		// Stacked etcd: an even member count tolerates no more failures than one member fewer.
		return nil, fmt.Errorf("plan cluster %q: %d control-plane nodes: etcd needs an odd number (1, 3 or 5)", c.Metadata.Name, n)
	}
	m.subnets, err = carveSubnets(m.vpcCIDR, m.zones)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// controlPlanes is the number of control-plane nodes.
func (m *model) controlPlanes() int {
	n := 0
	for _, g := range m.groups {
		if g.Role == spec.RoleControlPlane {
			n += g.Count
		}
	}
	return n
}

// controlPlaneSummary says how many control planes the cluster has, what they tolerate, how they
// join, where etcd's snapshots go and what runs the cloud integration: lines of the plan's header.
func (m *model) controlPlaneSummary() []string {
	n := m.controlPlanes()
	lines := []string{"Control plane: 1 node (etcd on it); losing it stops the API until the auto scaling group replaces it, which rejoins from the state store or, if etcd's disk is lost, starts empty: restore a snapshot."}
	if n > 1 {
		lines = []string{
			fmt.Sprintf("Control plane: %d nodes, stacked etcd (one member on each), tolerates %d down; spread over the zones by one auto scaling group.", n, (n-1)/2),
			fmt.Sprintf("Join: the first control plane to take %s runs kubeadm init; the other %d, and any the group replaces later, kubeadm join --control-plane with the shared key pairs from %s and remove the etcd members of terminated instances.", FileInitLock, n-1, dirPKI),
		}
	}
	return append(lines,
		fmt.Sprintf("etcd snapshots: %s by the etcd leader to %s%s, the newest %d kept; `kubedirect node etcd-restore` restores one.", EtcdSnapshotSchedule, m.names.StateStore(), DirEtcdBackups, EtcdSnapshotsKept),
		fmt.Sprintf("Cloud controller: %s:%s on the control planes (kubelet --cloud-provider=external; Nodes named after their private DNS names); Services of type LoadBalancer with service.beta.kubernetes.io/aws-load-balancer-type: nlb get a network load balancer.", cloudControllerRepository, m.spec.Spec.KubernetesVersion),
	)
}

// carveSubnets gives each zone the next block of the VPC's CIDR, 16 blocks in all (a /20 of a /16).
func carveSubnets(vpc string, zones []string) (map[string]string, error) {
	p, err := netip.ParsePrefix(vpc)
	if err != nil {
		return nil, fmt.Errorf("parse network CIDR %q: %w", vpc, err)
	}
	bits := min(p.Bits()+4, 28)
	size := uint32(1) << (32 - bits)
	if len(zones) > 1<<(bits-p.Bits()) {
		return nil, fmt.Errorf("carve subnets of %s: too many zones (%d)", vpc, len(zones))
	}
	base := p.Masked().Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	out := map[string]string{}
	for i, z := range zones {
		a := start + uint32(i)*size
		addr := netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
		out[z] = netip.PrefixFrom(addr, bits).String()
	}
	return out, nil
}

// tags are the tags every resource of the cluster carries, plus its Name.
func (m *model) tags(name string) map[string]string {
	t := map[string]string{
		TagCluster:                            m.names.Cluster,
		KubernetesClusterTag(m.names.Cluster): "owned",
	}
	if name != "" {
		t[tagName] = name
	}
	return t
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// machineType of a group, defaulted.
func machineType(g spec.NodeGroup) string {
	if g.MachineType == "" {
		return spec.DefaultMachineType
	}
	return g.MachineType
}

// armFamily matches Graviton instance families (t4g, m7g, c6gn, ...).
var armFamily = regexp.MustCompile(`^[a-z]+[0-9]+[a-z]*g[a-z]*\.`)

// arch is the CPU architecture of an instance type: arm64 or amd64.
func arch(instanceType string) string {
	if armFamily.MatchString(instanceType) {
		return "arm64"
	}
	return "amd64"
}

// archs are the architectures the node groups need, sorted.
func (m *model) archs() []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range m.groups {
		a := arch(machineType(g))
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

// cidrContains reports whether the CIDR outer contains all of inner.
func cidrContains(outer, inner string) bool {
	o, err1 := netip.ParsePrefix(outer)
	i, err2 := netip.ParsePrefix(inner)
	return err1 == nil && err2 == nil && o.Bits() <= i.Bits() && o.Contains(i.Addr())
}
