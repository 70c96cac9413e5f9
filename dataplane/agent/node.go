package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	"github.com/kubedirect/kubedirect/dataplane/cni"
	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	"github.com/kubedirect/kubedirect/dataplane/masq"
	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// VXLANDevice is the name of the overlay device the agent creates (external / collect-metadata mode).
const VXLANDevice = "kd-vxlan"

// NodeInfoOf extracts what translation needs from a Node (IPv4 only).
func NodeInfoOf(n *corev1.Node) NodeInfo {
	info := NodeInfo{Name: n.Name}
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if a.Type != t {
				continue
			}
			if ip, ok := parseAddr(a.Address); ok {
				if !info.InternalIP.IsValid() && t == corev1.NodeInternalIP {
					info.InternalIP = ip
				}
				if !containsAddr(info.Addrs, ip) {
					info.Addrs = append(info.Addrs, ip)
				}
			}
		}
	}
	cidrs := append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...)
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
			info.PodCIDR = p.Masked()
			break
		}
	}
	return info
}

// adoptNodes sets this node up (NIC, overlay, attachments) and takes the tunnels and node addresses a
// previous agent left in the pinned maps as what the datapath holds, so the next syncNodes writes only
// the differences and removes what is stale. It fails until the Node has an InternalIP and a pod CIDR.
func (a *Agent) adoptNodes() error {
	st, err := a.desiredNodes()
	if err != nil {
		return err
	}
	if err := a.setupNode(st.Self); err != nil {
		return err
	}
	if err := a.dp.Maps.IterateTunnels(func(p netip.Prefix, ip netip.Addr) bool { a.tunnels[p] = ip; return true }); err != nil {
		return fmt.Errorf("adopt tunnels: %w", err)
	}
	cur, err := a.dp.Maps.NodeAddrs4()
	if err != nil {
		return fmt.Errorf("adopt node addresses: %w", err)
	}
	for _, ip := range cur {
		a.nodeAddrs[ip] = true
	}
	return nil
}

// desiredNodes lists the Nodes and this node's addresses and computes what the datapath should hold.
func (a *Agent) desiredNodes() (nodeState, error) {
	list, err := a.nodeLister.List(labels.Everything())
	if err != nil {
		return nodeState{}, fmt.Errorf("list nodes: %w", err)
	}
	var local []netip.Addr
	if al, err := netlink.AddrList(nil, netlink.FAMILY_V4); err == nil {
		for _, x := range al {
			if ip, ok := netip.AddrFromSlice(x.IP.To4()); ok {
				local = append(local, ip)
			}
		}
	}
	return desiredNodes(list, a.node, local)
}

// syncNodes brings the tunnel map (and the overlay routes), the node addresses and the datapath config
// to the desired node state. When another node's addresses or pod CIDR changed, every Service is
// re-translated (only changed entries are written).
func (a *Agent) syncNodes() error {
	st, err := a.desiredNodes()
	if err != nil {
		return err
	}
	self := st.Self
	var errs []error
	for p := range st.Tunnels {
		// the route lets host-stack traffic (host-network clients, replies of host-network backends)
		// reach remote pods through the overlay; to_overlay adds the tunnel key. Written every time: it
		// repairs a route someone deleted.
		if err := overlayRoute(p, self.InternalIP, false); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, reconcile(a.tunnels, st.Tunnels, a.dp.Maps.SetTunnel,
		func(p netip.Prefix, _ netip.Addr) error {
			_ = overlayRoute(p, self.InternalIP, true)
			return a.dp.Maps.DeleteTunnel(p)
		}))
	errs = append(errs, reconcile(a.nodeAddrs, st.Addrs,
		func(ip netip.Addr, _ bool) error { return a.dp.Maps.AddNodeAddr(ip) },
		func(ip netip.Addr, _ bool) error { return a.dp.Maps.DeleteNodeAddr(ip) }))
	if err := a.writeConfig(self); err != nil {
		errs = append(errs, err)
	}
	if err := a.syncMasquerade(self); err != nil {
		errs = append(errs, err)
	}
	topo := Topology{Nodes: st.Nodes, DefaultMode: a.cfg.ExternalServiceMode, Self: self}
	// the first sync after adoption has no previous topology: every Service is translated anyway
	changed := a.topo.Nodes != nil && !reflect.DeepEqual(sortedNodes(topo), sortedNodes(a.topo))
	a.topo = topo
	a.mu.Lock()
	a.status.Tunnels = len(a.tunnels)
	a.status.NodeIP, a.status.PodCIDR = self.InternalIP.String(), self.PodCIDR.String()
	a.mu.Unlock()
	if changed {
		svcs, _ := a.svcLister.List(labels.Everything())
		for _, s := range svcs {
			a.queue.Add(s.Namespace + "/" + s.Name)
		}
	}
	return errors.Join(errs...)
}

// watchNodeAddrs re-syncs the node whenever an IPv4 address is added to or removed from one of its
// interfaces (NodePorts answer on every local address), until ctx ends.
func (a *Agent) watchNodeAddrs(ctx context.Context) {
	ch := make(chan netlink.AddrUpdate, 64)
	err := netlink.AddrSubscribeWithOptions(ch, ctx.Done(), netlink.AddrSubscribeOptions{
		ErrorCallback: func(err error) { a.log.Warn("watch node addresses", "err", err) },
	})
	if err != nil {
		a.log.Warn("node addresses are read on Node changes only", "err", err)
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			// pod veths get IPv6 link-local addresses: ignore those
			if u.LinkAddress.IP.To4() != nil {
				a.queue.Add(nodesKey)
			}
		}
	}
}

func sortedNodes(t Topology) []NodeInfo {
	out := make([]NodeInfo, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (a *Agent) writeConfig(self NodeInfo) error {
	c := maps.Config{
		NodeIP:      maps.Addr4(self.InternalIP),
		PodCIDR:     maps.Addr4(self.PodCIDR.Masked().Addr()),
		PodMask:     [4]byte(net.CIDRMask(self.PodCIDR.Bits(), 32)),
		HairpinAddr: maps.Addr4(maps.DefaultHairpinAddr),
		VXLANPort:   uint16(a.cfg.VXLANPort),
	}
	if a.cfg.ExternalServiceMode == spec.ModeDSR {
		c.Mode = maps.ModeDSR
	}
	// the agent runs in the node's network namespace (hostNetwork)
	if cookie, err := maps.NetnsCookie(); err == nil {
		c.HostNetns = cookie
	} else {
		a.log.Warn("localhost NodePorts are not served", "err", err)
	}
	if l, err := netlink.LinkByName(VXLANDevice); err == nil {
		c.VXLANIfindex = uint32(l.Attrs().Index)
	}
	if l, err := netlink.LinkByName(a.netdev); err == nil {
		c.NetdevIfindex = uint32(l.Attrs().Index)
		if mtu := l.Attrs().MTU - cni.VXLANOverhead; mtu > 0 && mtu <= 0xffff {
			c.TunnelMTU = uint16(mtu)
		}
	}
	if a.cfg.EventSample > 0 {
		c.EventSample = uint32(a.cfg.EventSample)
	}
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	old, err := a.dp.Maps.GetConfig()
	if err == nil {
		// a monitor session's override stays until its own deadline
		c.SampleOverride, c.OverrideUntil = old.SampleOverride, old.OverrideUntil
		if old == c {
			return nil
		}
	}
	return a.dp.Maps.SetConfig(c)
}

// syncMasquerade (re)writes the pod egress masquerade table for this node's pod range, so pod traffic
// to anything outside the non-masquerade CIDRs (nodes, the API server, the internet) leaves with the
// node's address: underlays such as an AWS VPC drop packets from pod addresses they do not know. It
// runs on every node sync, which also repairs a table someone flushed.
func (a *Agent) syncMasquerade(self NodeInfo) error {
	r := masq.Rules{PodCIDR: self.PodCIDR, NodeAddr: self.InternalIP, TunnelPort: uint16(a.cfg.VXLANPort)}
	// pods' source ports inside the NodePort range are moved above it: from_netdev must never take a
	// reply for a NodePort flow
	if pr, err := parsePortRanges(a.cfg.NodePortRange); err == nil && len(pr) == 1 && pr[0].first > 0 && pr[0].last < 65535 {
		r.NodePortFirst, r.NodePortLast = uint16(pr[0].first), uint16(pr[0].last)
	}
	cidrs := a.cfg.NonMasqueradeCIDRs
	if len(cidrs) == 0 {
		// no cluster range configured: at least this node's pods talk to each other unmasqueraded
		cidrs = []string{self.PodCIDR.String()}
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("parse nonMasqueradeCIDRs %q: %w", c, err)
		}
		r.NonMasquerade = append(r.NonMasquerade, p)
	}
	return masq.Sync(r)
}

// setupNode finds the NIC, creates the vxlan device, sets the sysctls the datapath needs, attaches the
// programs and tells the CNI plugin the pod CIDR and MTU.
func (a *Agent) setupNode(self NodeInfo) error {
	dev := a.cfg.Device
	if dev == "" {
		d, err := linkWithAddr(self.InternalIP)
		if err != nil {
			return err
		}
		dev = d
	}
	a.netdev = dev
	nic, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("find NIC %s: %w", dev, err)
	}
	mtu := nic.Attrs().MTU - cni.VXLANOverhead
	if a.cfg.MTU != 0 {
		if a.cfg.MTU > mtu {
			// pods would send packets the tunnel cannot carry whole: TCP is clamped and DF packets get
			// ICMP fragmentation needed, but everything else is fragmented on the underlay
			a.log.Warn("configured pod MTU leaves no room for VXLAN", "mtu", a.cfg.MTU, "nicMTU", nic.Attrs().MTU, "max", mtu)
		}
		mtu = a.cfg.MTU
	}
	if err := ensureVXLAN(a.cfg.VXLANPort, mtu); err != nil {
		return err
	}
	for path, val := range map[string]string{
		"net/ipv4/ip_forward":                            "1",
		"net/ipv4/conf/all/rp_filter":                    "0",
		"net/ipv4/conf/default/rp_filter":                "0",
		"net/ipv4/conf/" + VXLANDevice + "/rp_filter":    "0",
		"net/ipv4/conf/" + dev + "/rp_filter":            "0",
		"net/ipv4/conf/" + VXLANDevice + "/accept_local": "1",
	} {
		if err := os.WriteFile(filepath.Join(procSys, path), []byte(val), 0o644); err != nil {
			a.log.Warn("set sysctl", "key", path, "err", err)
		}
	}
	if err := a.writeConfig(self); err != nil {
		return err
	}
	if err := a.dp.AttachNetdev(dev); err != nil {
		return fmt.Errorf("attach NIC programs: %w", err)
	}
	mode, err := a.attachNetdevXDP(dev)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.status.Netdevs = map[string]string{dev: mode}
	a.mu.Unlock()
	if err := a.dp.AttachOverlay(VXLANDevice); err != nil {
		return fmt.Errorf("attach overlay programs: %w", err)
	}
	if cg := a.cgroupPath(); cg != "" {
		if err := a.dp.AttachCgroup(cg); err != nil {
			return fmt.Errorf("attach socket hooks: %w", err)
		}
	}
	if err := cni.WriteNodeState(a.cfg.CNIDataDir, cni.NodeState{PodCIDR: self.PodCIDR.String(), MTU: mtu}); err != nil {
		return err
	}
	a.log.Info("node set up", "nic", dev, "nicMode", mode, "nodeIP", self.InternalIP, "podCIDR", self.PodCIDR, "podMTU", mtu, "cgroup", a.cgroupPath())
	return nil
}

// attachNetdevXDP puts xdp_netdev in front of tc on the NIC dev when the configuration asks for it and
// returns the mode dev got (loader.NetdevXDP or loader.NetdevTC). With xdp off it detaches an XDP
// program an earlier agent pinned: a stale fast path must not outlive the setting.
func (a *Agent) attachNetdevXDP(dev string) (string, error) {
	if a.cfg.XDP != spec.XDPNative {
		if err := a.dp.DetachNetdevXDP(dev); err != nil {
			return "", fmt.Errorf("detach NIC XDP: %w", err)
		}
		return loader.NetdevTC, nil
	}
	mode, err := a.dp.AttachNetdevXDP(dev)
	if err != nil {
		return "", fmt.Errorf("attach NIC XDP: %w", err)
	}
	return mode, nil
}

// cgroupPath is the cgroup v2 directory the socket hooks attach to ("" disables them).
func (a *Agent) cgroupPath() string {
	switch a.cfg.CgroupPath {
	case "none":
		return ""
	case "":
		// The node's own cgroup tree (mounted by the chart) comes first: in a container, /sys/fs/cgroup
		// is only the container's subtree and hooks there would not see host-network clients.
		for _, p := range []string{"/host/sys/fs/cgroup", "/host/sys/fs/cgroup/unified", "/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
			var st unix.Statfs_t
			if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
				return p
			}
		}
		return ""
	}
	return a.cfg.CgroupPath
}

func linkWithAddr(ip netip.Addr) (string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return "", fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			continue
		}
		for _, x := range addrs {
			if a, ok := netip.AddrFromSlice(x.IP.To4()); ok && a == ip {
				return l.Attrs().Name, nil
			}
		}
	}
	return "", fmt.Errorf("no interface holds the node address %s (set device in the config)", ip)
}

// ensureVXLAN creates the overlay device, or keeps an existing one that already matches (an agent
// restart must not disturb flows through it).
func ensureVXLAN(port, mtu int) error {
	if l, err := netlink.LinkByName(VXLANDevice); err == nil {
		if v, ok := l.(*netlink.Vxlan); ok && v.FlowBased && v.Port == port {
			if v.Attrs().MTU != mtu {
				_ = netlink.LinkSetMTU(l, mtu)
			}
			_ = netlink.LinkSetARPOff(l)
			return netlink.LinkSetUp(l)
		}
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("replace %s: %w", VXLANDevice, err)
		}
	}
	v := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: VXLANDevice, MTU: mtu}, FlowBased: true, Port: port, Learning: false}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("create %s: %w", VXLANDevice, err)
	}
	l, err := netlink.LinkByName(VXLANDevice)
	if err != nil {
		return fmt.Errorf("find %s: %w", VXLANDevice, err)
	}
	if err := netlink.LinkSetARPOff(l); err != nil {
		return fmt.Errorf("set %s noarp: %w", VXLANDevice, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", VXLANDevice, err)
	}
	return nil
}

// overlayRoute adds (or deletes) the route of a remote pod CIDR through the vxlan device.
func overlayRoute(cidr netip.Prefix, src netip.Addr, del bool) error {
	l, err := netlink.LinkByName(VXLANDevice)
	if err != nil {
		return fmt.Errorf("find %s: %w", VXLANDevice, err)
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Scope: netlink.SCOPE_LINK, Src: src.AsSlice(),
		Dst: &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), 32)}}
	if del {
		_ = netlink.RouteDel(r)
		return nil
	}
	if err := netlink.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s via %s: %w", cidr, VXLANDevice, err)
	}
	return nil
}

func parseMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		return make(net.HardwareAddr, 6)
	}
	return m
}
