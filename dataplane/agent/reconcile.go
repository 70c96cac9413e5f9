package agent

import (
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubedirect/kubedirect/dataplane/cni"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// errReported marks a failed write whose error was already reported: reconcile retries it next time
// but leaves it out of its result.
var errReported = errors.New("already reported")

// reconcile makes have (what the datapath holds) match want, as Programmer does for Services: put for
// every key that is missing or holds another value, del for every key of have that want lacks. have is
// updated after each write that succeeded, so a failed one is retried by the next call. Errors are joined.
func reconcile[K, V comparable](have, want map[K]V, put func(K, V) error, del func(K, V) error) error {
	var errs []error
	failed := func(err error) bool {
		if err != nil && !errors.Is(err, errReported) {
			errs = append(errs, err)
		}
		return err != nil
	}
	for k, v := range want {
		if old, ok := have[k]; ok && old == v {
			continue
		}
		if !failed(put(k, v)) {
			have[k] = v
		}
	}
	for k, v := range have {
		if _, ok := want[k]; !ok && !failed(del(k, v)) {
			delete(have, k)
		}
	}
	return errors.Join(errs...)
}

// nodeState is what the Nodes and this node's interfaces ask of the datapath.
type nodeState struct {
	// Self is this node.
	Self NodeInfo
	// Nodes are every Node by name.
	Nodes map[string]NodeInfo
	// Tunnels route every other node's pod CIDR to its InternalIP.
	Tunnels map[netip.Prefix]netip.Addr
	// Addrs are this node's addresses, where NodePorts answer: every local IPv4 address but loopback (as
	// kube-proxy without --nodeport-addresses) and the Node's own; 127.0.0.0/8 is the socket hooks' job.
	Addrs map[netip.Addr]bool
}

// desiredNodes computes the node state from the Node objects and this node's local addresses; an error
// says this node cannot be set up yet.
func desiredNodes(nodes []*corev1.Node, self string, local []netip.Addr) (nodeState, error) {
	st := nodeState{Nodes: map[string]NodeInfo{}, Tunnels: map[netip.Prefix]netip.Addr{}, Addrs: map[netip.Addr]bool{}}
	for _, n := range nodes {
		st.Nodes[n.Name] = NodeInfoOf(n)
	}
	me, ok := st.Nodes[self]
	if !ok {
		return st, fmt.Errorf("node %s not found", self)
	}
	if !me.InternalIP.IsValid() || !me.PodCIDR.IsValid() {
		return st, fmt.Errorf("node %s has no InternalIP or pod CIDR yet", self)
	}
	st.Self = me
	for _, n := range st.Nodes {
		if n.Name != self && n.PodCIDR.IsValid() && n.InternalIP.IsValid() {
			st.Tunnels[n.PodCIDR] = n.InternalIP
		}
	}
	for _, ip := range me.Addrs {
		st.Addrs[ip] = true
	}
	for _, ip := range local {
		if ip.Is4() && !ip.IsLoopback() {
			st.Addrs[ip] = true
		}
	}
	return st, nil
}

// desiredEndpoints maps the pods the CNI plugin attached (its IPAM records) to their endpoints map
// entries; a record without a host ifindex is an ADD still running.
func desiredEndpoints(eps []cni.Endpoint) map[netip.Addr]maps.EndpointValue {
	want := map[netip.Addr]maps.EndpointValue{}
	for _, ep := range eps {
		if ep.HostIfindex == 0 {
			continue
		}
		v := maps.EndpointValue{Ifindex: uint32(ep.HostIfindex)}
		copy(v.MAC[:], parseMAC(ep.PodMAC))
		copy(v.HostMAC[:], parseMAC(ep.HostMAC))
		want[ep.IP] = v
	}
	return want
}
