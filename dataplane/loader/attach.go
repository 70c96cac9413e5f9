package loader

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubedirect/kubedirect/internal/privfs"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AttachNetdev attaches from_netdev (ingress) and to_netdev (egress) to the
// node NIC ifname.
func (d *Datapath) AttachNetdev(ifname string) error {
	idx, err := ifindex(ifname)
	if err != nil {
		return err
	}
	return d.attachPair(idx, "netdev-"+ifname, d.Programs.FromNetdev, d.Programs.ToNetdev)
}

// Netdev acceleration modes, as AttachNetdevXDP reports them per interface.
const (
	NetdevXDP = "xdp" // xdp_netdev runs in the driver (native XDP) in front of from_netdev
	NetdevTC  = "tc"  // from_netdev alone: the driver has no native XDP
)

// AttachNetdevXDP puts xdp_netdev in front of from_netdev on the NIC ifname (attach
// AttachNetdev too: whatever XDP passes, tc handles). Only native (driver) XDP is used:
// generic XDP would run on an skb already built, saving nothing. It returns NetdevXDP,
// or NetdevTC when the driver refuses native XDP (the interface keeps tc alone).
func (d *Datapath) AttachNetdevXDP(ifname string) (string, error) {
	idx, err := ifindex(ifname)
	if err != nil {
		return "", err
	}
	pin := d.linkPath(xdpPinName(ifname))
	if d.updatePinned(pin, d.Programs.XdpNetdev) {
		return NetdevXDP, nil
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: d.Programs.XdpNetdev, Interface: idx, Flags: link.XDPDriverMode})
	if err != nil {
		d.log.Info("native XDP refused, tc only", "interface", ifname, "err", err)
		return NetdevTC, nil
	}
	return NetdevXDP, pinLink(l, pin)
}

// DetachNetdev removes the programs (tc and XDP) from ifname.
func (d *Datapath) DetachNetdev(ifname string) error {
	idx, _ := ifindex(ifname)
	return errors.Join(d.detachPair(idx, "netdev-"+ifname), d.DetachNetdevXDP(ifname))
}

// DetachNetdevXDP removes xdp_netdev from ifname (tc stays); nothing to do when it is not attached.
func (d *Datapath) DetachNetdevXDP(ifname string) error {
	return unpinLink(d.linkPath(xdpPinName(ifname)))
}

// xdpPinName is the name of the pinned XDP link of the NIC ifname; its "-xdp" suffix is the hook
// Attachments reports.
func xdpPinName(ifname string) string { return "netdev-" + ifname + "-xdp" }

// AttachOverlay attaches from_overlay / to_overlay to the vxlan device ifname
// (created in external / collect-metadata mode).
func (d *Datapath) AttachOverlay(ifname string) error {
	idx, err := ifindex(ifname)
	if err != nil {
		return err
	}
	return d.attachPair(idx, "overlay-"+ifname, d.Programs.FromOverlay, d.Programs.ToOverlay)
}

// DetachOverlay removes the programs from the vxlan device ifname.
func (d *Datapath) DetachOverlay(ifname string) error {
	idx, _ := ifindex(ifname)
	return d.detachPair(idx, "overlay-"+ifname)
}

// AttachContainer attaches from_container (ingress: what the pod sends) and
// to_container (egress) to the host side of a pod's veth.
func (d *Datapath) AttachContainer(hostIfindex int) error {
	return d.attachPair(hostIfindex, fmt.Sprintf("container-%d", hostIfindex), d.Programs.FromContainer, d.Programs.ToContainer)
}

// DetachContainer removes the programs from a pod veth (a deleted veth drops
// them anyway; this also removes the pinned links).
func (d *Datapath) DetachContainer(hostIfindex int) error {
	return d.detachPair(hostIfindex, fmt.Sprintf("container-%d", hostIfindex))
}

// cgroupHooks pairs the socket programs with their attach types.
func (d *Datapath) cgroupHooks() []struct {
	name string
	at   ebpf.AttachType
	prog *ebpf.Program
} {
	return []struct {
		name string
		at   ebpf.AttachType
		prog *ebpf.Program
	}{
		{"connect4", ebpf.AttachCGroupInet4Connect, d.Programs.SockConnect4},
		{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, d.Programs.SockSendmsg4},
		{"recvmsg4", ebpf.AttachCGroupUDP4Recvmsg, d.Programs.SockRecvmsg4},
		{"getpeername4", ebpf.AttachCgroupInet4GetPeername, d.Programs.SockGetpeername4},
	}
}

func cgroupPinName(path, hook string) string {
	return "cgroup" + strings.ReplaceAll(filepath.Clean(path), "/", "_") + "-" + hook
}

// AttachCgroup attaches the socket hooks (connect4, sendmsg4, recvmsg4,
// getpeername4) to the cgroup v2 directory path, so host-network clients
// under it reach ClusterIPs.
func (d *Datapath) AttachCgroup(path string) error {
	for _, h := range d.cgroupHooks() {
		pin := d.linkPath(cgroupPinName(path, h.name))
		if d.updatePinned(pin, h.prog) {
			continue
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: path, Attach: h.at, Program: h.prog})
		if err != nil {
			return fmt.Errorf("attach %s to cgroup %s: %w", h.name, path, err)
		}
		if err := pinLink(l, pin); err != nil {
			return err
		}
	}
	return nil
}

// DetachCgroup removes the socket hooks from the cgroup path.
func (d *Datapath) DetachCgroup(path string) error {
	var errs []error
	for _, h := range d.cgroupHooks() {
		errs = append(errs, unpinLink(d.linkPath(cgroupPinName(path, h.name))))
	}
	return errors.Join(errs...)
}

func (d *Datapath) linkPath(name string) string {
	return filepath.Join(d.opts.PinDir, "links", name)
}

func ifindex(name string) (int, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("find interface %s: %w", name, err)
	}
	return ifc.Index, nil
}

func (d *Datapath) attachPair(idx int, name string, in, out *ebpf.Program) error {
	if err := d.attachTC(idx, name+"-ingress", in, true); err != nil {
		return err
	}
	return d.attachTC(idx, name+"-egress", out, false)
}

func (d *Datapath) detachPair(idx int, name string) error {
	var errs []error
	for _, dir := range []string{"ingress", "egress"} {
		errs = append(errs, unpinLink(d.linkPath(name+"-"+dir)))
		if idx > 0 {
			errs = append(errs, detachClsact(idx, dir == "ingress"))
			delete(d.clsact, clsactAttach{idx, dir == "ingress"})
		}
	}
	return errors.Join(errs...)
}

// updatePinned swaps prog into an existing pinned link; false if there is
// none or it no longer works (its device or cgroup is gone: then it is unpinned).
func (d *Datapath) updatePinned(pin string, prog *ebpf.Program) bool {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return false
	}
	defer l.Close()
	if err := l.Update(prog); err == nil {
		return true
	}
	_ = l.Unpin()
	return false
}

func pinLink(l link.Link, pin string) error {
	defer l.Close()
	if err := privfs.MkdirAll(filepath.Dir(pin)); err != nil {
		return fmt.Errorf("create link pin dir: %w", err)
	}
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin link %s: %w", pin, err)
	}
	return nil
}

func unpinLink(pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("load pinned link %s: %w", pin, err)
	}
	defer l.Close()
	return l.Unpin() // the link goes away with its last reference
}

// attachTC attaches with tcx (pinned link, updated in place on restart) and
// falls back to a clsact qdisc with a direct-action cls_bpf filter.
func (d *Datapath) attachTC(idx int, name string, prog *ebpf.Program, ingress bool) error {
	if !d.opts.ForceClsact {
		pin := d.linkPath(name)
		if d.updatePinned(pin, prog) {
			return nil
		}
		at := ebpf.AttachTCXEgress
		if ingress {
			at = ebpf.AttachTCXIngress
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: idx, Program: prog, Attach: at})
		if err == nil {
			return pinLink(l, pin)
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("attach tcx %s: %w", name, err)
		}
		d.log.Info("tcx not supported, using clsact", "attach", name)
	}
	if err := attachClsact(idx, prog, ingress, name); err != nil {
		return err
	}
	if d.clsact == nil {
		d.clsact = map[clsactAttach]bool{}
	}
	d.clsact[clsactAttach{idx, ingress}] = true
	return nil
}

// clsactHandle and clsactPrio identify our cls_bpf filters.
const (
	clsactHandle = 0x4b44 // "KD"
	clsactPrio   = 1
)

func attachClsact(idx int, prog *ebpf.Program, ingress bool, name string) error {
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	parent := uint32(netlink.HANDLE_MIN_EGRESS)
	if ingress {
		parent = netlink.HANDLE_MIN_INGRESS
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: parent, Handle: clsactHandle,
			Protocol: unix.ETH_P_ALL, Priority: clsactPrio},
		Fd: prog.FD(), Name: "kd-" + name, DirectAction: true,
	}
	if err := netlink.FilterReplace(f); err != nil {
		return fmt.Errorf("attach cls_bpf %s: %w", name, err)
	}
	return nil
}

// detachClsact removes our cls_bpf filter if there is one.
func detachClsact(idx int, ingress bool) error {
	parent := uint32(netlink.HANDLE_MIN_EGRESS)
	if ingress {
		parent = netlink.HANDLE_MIN_INGRESS
	}
	f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: idx, Parent: parent,
		Handle: clsactHandle, Protocol: unix.ETH_P_ALL, Priority: clsactPrio}}
	if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) &&
		!errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("detach cls_bpf: %w", err)
	}
	return nil
}

// detachAll unpins every pinned link (detaching it) and removes the clsact
// filters this Datapath installed.
func (d *Datapath) detachAll() error {
	var errs []error
	for a := range d.clsact {
		errs = append(errs, detachClsact(a.ifindex, a.ingress))
	}
	d.clsact = nil
	dir := filepath.Join(d.opts.PinDir, "links")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.Join(errs...)
		}
		return errors.Join(append(errs, err)...)
	}
	for _, e := range ents {
		errs = append(errs, unpinLink(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}
