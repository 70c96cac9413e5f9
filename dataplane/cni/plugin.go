// Package cni is kubedirect's CNI plugin (spec 1.0: ADD, DEL, CHECK, VERSION): a veth pair per pod, a /32
// from the node's pod CIDR through a crash-safe file-per-address IPAM, and a default route via the
// link-local gateway 169.254.1.1 answered by a static neighbour entry. The agent learns the pod's
// endpoint from the IPAM files and programs the dataplane for it; ADD and DEL tell it at once over the
// agent's unix socket (agentsock.go).
package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubedirect/kubedirect/internal/privfs"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// PluginName is the CNI "type" of the plugin and the file name it is installed as.
const PluginName = "kubedirect"

// DefaultDataDir holds the IPAM directory and the node state the agent writes.
const DefaultDataDir = "/run/kubedirect"

// GatewayIP is the link-local next hop every pod routes through; the host veth's MAC answers it.
var GatewayIP = net.IPv4(169, 254, 1, 1)

// VXLANOverhead is subtracted from the underlay MTU for pod interfaces.
const VXLANOverhead = 50

// NetConf is the plugin's network configuration (the conflist entry).
type NetConf struct {
	types.NetConf
	// DataDir holds ipam/ and node.json. Default: /run/kubedirect.
	DataDir string `json:"dataDir,omitempty"`
	// PodCIDR overrides the node's pod CIDR from node.json.
	PodCIDR string `json:"podCIDR,omitempty"`
	// MTU overrides the pod interface MTU (default: underlay MTU - 50).
	MTU int `json:"mtu,omitempty"`
	// AgentWait is how long ADD waits for the agent to program the new pod (a Go duration; default
	// "5s", "0s" disables). ADD succeeds after the wait either way; waiting means the pod's first
	// packets already meet the dataplane.
	AgentWait string `json:"agentWait,omitempty"`
}

// NodeState is what the agent writes to <DataDir>/node.json for the plugin: the node's pod CIDR and
// the pod MTU.
type NodeState struct {
	PodCIDR string `json:"podCIDR"`
	MTU     int    `json:"mtu,omitempty"`
}

// WriteNodeState atomically writes st to dataDir/node.json.
func WriteNodeState(dataDir string, st NodeState) error {
	if err := privfs.MkdirAll(dataDir); err != nil {
		return fmt.Errorf("create cni data dir: %w", err)
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode node state: %w", err)
	}
	tmp := filepath.Join(dataDir, ".node.json.tmp")
	if err := os.WriteFile(tmp, data, privfs.FileMode); err != nil {
		return fmt.Errorf("write node state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, "node.json")); err != nil {
		return fmt.Errorf("replace node state: %w", err)
	}
	return nil
}

// ReadNodeState reads dataDir/node.json.
func ReadNodeState(dataDir string) (NodeState, error) {
	var st NodeState
	data, err := os.ReadFile(filepath.Join(dataDir, "node.json"))
	if err != nil {
		return st, fmt.Errorf("read node state (is the agent running?): %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("parse node state: %w", err)
	}
	return st, nil
}

// IPAMDir is the IPAM directory under dataDir.
func IPAMDir(dataDir string) string { return filepath.Join(dataDir, "ipam") }

// HostVethName is the deterministic host-side interface name of an attachment (at most 15 bytes).
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + ifName))
	return "kd" + hex.EncodeToString(sum[:])[:11]
}

// Main runs the plugin with the CNI environment and stdin (the skel dispatcher); it exits the process on error.
func Main() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: withConf(addAndPrint), Del: withConf(Del), Check: withConf(Check)},
		version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0"), "CNI plugin kubedirect")
}

// withConf is a CNI command that parses the network configuration on stdin and runs fn with it.
func withConf(fn func(*NetConf, *skel.CmdArgs) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		conf, err := parseConf(args.StdinData)
		if err != nil {
			return err
		}
		return fn(conf, args)
	}
}

func parseConf(data []byte) (*NetConf, error) {
	c := &NetConf{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("parse network config: %w", err)
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	return c, nil
}

// podCIDRAndMTU resolves the pod CIDR and the pod MTU from the config, node.json and the underlay.
func (c *NetConf) podCIDRAndMTU() (netip.Prefix, int, error) {
	cidr, mtu := c.PodCIDR, c.MTU
	if cidr == "" || mtu == 0 {
		st, err := ReadNodeState(c.DataDir)
		if err != nil && cidr == "" {
			return netip.Prefix{}, 0, err
		}
		if cidr == "" {
			cidr = st.PodCIDR
		}
		if mtu == 0 {
			mtu = st.MTU
		}
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, 0, fmt.Errorf("bad pod CIDR %q", cidr)
	}
	if mtu == 0 {
		mtu = UnderlayMTU() - VXLANOverhead
	}
	return p, mtu, nil
}

// UnderlayMTU is the MTU of the link holding the IPv4 default route in the current namespace, or of the
// first non-loopback link that is up, or 1500.
func UnderlayMTU() int {
	if routes, err := netlink.RouteList(nil, netlink.FAMILY_V4); err == nil {
		for _, r := range routes {
			if r.Dst == nil || (r.Dst.IP.IsUnspecified() && r.Dst.Mask != nil && func() bool { o, _ := r.Dst.Mask.Size(); return o == 0 }()) {
				if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
					return l.Attrs().MTU
				}
			}
		}
	}
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			a := l.Attrs()
			if a.Flags&net.FlagLoopback == 0 && a.Flags&net.FlagUp != 0 && l.Type() != "veth" && l.Type() != "vxlan" {
				return a.MTU
			}
		}
	}
	return 1500
}

func k8sArgs(args string) (namespace, pod string) {
	for _, kv := range strings.Split(args, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			namespace = v
		case "K8S_POD_NAME":
			pod = v
		}
	}
	return namespace, pod
}

// addAndPrint is the ADD command: Add, then the CNI result on stdout.
func addAndPrint(conf *NetConf, args *skel.CmdArgs) error {
	res, err := Add(conf, args)
	if err != nil {
		return err
	}
	return types.PrintResult(res, conf.CNIVersion)
}

// Add attaches the pod in args.Netns and returns the CNI result.
func Add(conf *NetConf, args *skel.CmdArgs) (*current.Result, error) {
	cidr, mtu, err := conf.podCIDRAndMTU()
	if err != nil {
		return nil, err
	}
	store := Store{Dir: IPAMDir(conf.DataDir)}
	namespace, pod := k8sArgs(args.Args)
	ep, err := store.Allocate(cidr, Endpoint{ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns, Namespace: namespace, Pod: pod})
	if err != nil {
		return nil, err
	}
	ep.HostVeth = HostVethName(args.ContainerID, args.IfName)
	res, err := setup(args, ep, mtu)
	if err != nil {
		_ = teardown(args.Netns, args.IfName, ep.HostVeth)
		_, _ = store.Release(args.ContainerID, args.IfName)
		return nil, err
	}
	host, cont := res.Interfaces[0], res.Interfaces[1]
	ep.HostMAC, ep.PodMAC = host.Mac, cont.Mac
	if l, err := netlink.LinkByName(ep.HostVeth); err == nil {
		ep.HostIfindex = l.Attrs().Index
	}
	if err := store.Update(ep); err != nil {
		_ = teardown(args.Netns, args.IfName, ep.HostVeth)
		_, _ = store.Release(args.ContainerID, args.IfName)
		return nil, err
	}
	wait := 5 * time.Second
	if conf.AgentWait != "" {
		if d, err := time.ParseDuration(conf.AgentWait); err == nil {
			wait = d
		}
	}
	if wait > 0 {
		// ADD succeeds either way (an agent that is down programs the pod when it starts); waiting means
		// the pod's first packets already meet the dataplane
		_, _ = Notify(conf.DataDir, Request{Op: OpAdd, IP: ep.IP, HostIfindex: ep.HostIfindex}, wait)
	}
	return res, nil
}

func setup(args *skel.CmdArgs, ep Endpoint, mtu int) (*current.Result, error) {
	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", args.Netns, err)
	}
	defer podNS.Close()
	if l, err := netlink.LinkByName(ep.HostVeth); err == nil {
		// a previous ADD of this attachment died half way: start over
		_ = netlink.LinkDel(l)
	}
	var hostIf, contIf net.Interface
	err = podNS.Do(func(hostNS ns.NetNS) error {
		var err error
		if l, lerr := netlink.LinkByName(args.IfName); lerr == nil {
			_ = netlink.LinkDel(l)
		}
		hostIf, contIf, err = ip.SetupVethWithName(args.IfName, ep.HostVeth, mtu, "", hostNS)
		if err != nil {
			return fmt.Errorf("create veth: %w", err)
		}
		link, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("find pod interface: %w", err)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("set pod interface up: %w", err)
		}
		if lo, err := netlink.LinkByName("lo"); err == nil {
			_ = netlink.LinkSetUp(lo)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ep.IP.AsSlice(), Mask: net.CIDRMask(32, 32)}}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add pod address: %w", err)
		}
		gw := &net.IPNet{IP: GatewayIP, Mask: net.CIDRMask(32, 32)}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: gw, Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("add gateway route: %w", err)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: GatewayIP}); err != nil {
			return fmt.Errorf("add default route: %w", err)
		}
		if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4,
			State: netlink.NUD_PERMANENT, IP: GatewayIP, HardwareAddr: hostIf.HardwareAddr}); err != nil {
			return fmt.Errorf("add gateway neighbour: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	hostLink, err := netlink.LinkByName(ep.HostVeth)
	if err != nil {
		return nil, fmt.Errorf("find host veth: %w", err)
	}
	dst := &net.IPNet{IP: ep.IP.AsSlice(), Mask: net.CIDRMask(32, 32)}
	if err := netlink.RouteReplace(&netlink.Route{LinkIndex: hostLink.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, fmt.Errorf("add host route to pod: %w", err)
	}
	contIdx := 1
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: hostIf.Name, Mac: hostIf.HardwareAddr.String()},
			{Name: contIf.Name, Mac: contIf.HardwareAddr.String(), Sandbox: args.Netns},
		},
		IPs: []*current.IPConfig{{Interface: &contIdx, Address: *dst, Gateway: GatewayIP}},
		Routes: []*types.Route{
			{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: GatewayIP},
		},
	}, nil
}

// teardown removes the attachment's interfaces; missing ones are not errors.
func teardown(netnsPath, ifName, hostVeth string) error {
	var errs []error
	if netnsPath != "" {
		err := ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
			if l, err := netlink.LinkByName(ifName); err == nil {
				return netlink.LinkDel(l)
			}
			return nil
		})
		var nsErr ns.NSPathNotExistErr
		if err != nil && !errors.As(err, &nsErr) {
			errs = append(errs, fmt.Errorf("delete pod interface: %w", err))
		}
	}
	if l, err := netlink.LinkByName(hostVeth); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete host veth: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Del detaches the pod and releases its address. It is idempotent: deleting an attachment that does
// not exist (or whose netns is gone) succeeds.
func Del(conf *NetConf, args *skel.CmdArgs) error {
	terr := teardown(args.Netns, args.IfName, HostVethName(args.ContainerID, args.IfName))
	released, err := (Store{Dir: IPAMDir(conf.DataDir)}).Release(args.ContainerID, args.IfName)
	if err != nil {
		return errors.Join(terr, err)
	}
	for _, ep := range released {
		// the agent removes the endpoint now rather than at its next resync; it may be down
		_, _ = Notify(conf.DataDir, Request{Op: OpDel, IP: ep.IP}, delNotifyWait)
	}
	return terr
}

// delNotifyWait bounds how long DEL waits for the agent to remove the pod's endpoint.
const delNotifyWait = 2 * time.Second

// Check verifies that the attachment's address is allocated and configured on the pod interface and
// that the host veth exists.
func Check(conf *NetConf, args *skel.CmdArgs) error {
	ep, err := (Store{Dir: IPAMDir(conf.DataDir)}).Lookup(args.ContainerID, args.IfName)
	if err != nil {
		return err
	}
	if ep == nil {
		return fmt.Errorf("check: no address allocated to %s/%s", args.ContainerID, args.IfName)
	}
	if _, err := netlink.LinkByName(ep.HostVeth); err != nil {
		return fmt.Errorf("check: host veth %s: %w", ep.HostVeth, err)
	}
	return ns.WithNetNSPath(args.Netns, func(ns.NetNS) error {
		l, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("check: pod interface: %w", err)
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("check: list addresses: %w", err)
		}
		for _, a := range addrs {
			if a.IP.Equal(ep.IP.AsSlice()) {
				return nil
			}
		}
		return fmt.Errorf("check: %s is not on %s", ep.IP, args.IfName)
	})
}
