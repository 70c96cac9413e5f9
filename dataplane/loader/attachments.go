package loader

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// Attachment is one place a kubedirect program is attached.
type Attachment struct {
	// Kind is netdev, overlay, container (a pod's veth) or cgroup; "" for a clsact filter, which does
	// not say.
	Kind string `json:"kind,omitempty"`
	// Interface is the device name (or the cgroup path, for the socket hooks).
	Interface string `json:"interface"`
	// Hook is ingress, egress or xdp, or the socket hook (connect4, sendmsg4, recvmsg4, getpeername4).
	Hook string `json:"hook"`
	// Mode is tcx, clsact, xdp (native) or cgroup.
	Mode string `json:"mode"`
}

// Attachments lists where the datapath pinned under pinDir is attached, in the calling thread's network
// namespace: its pinned links (tcx and cgroup) and the clsact filters it installed where tcx is missing.
func Attachments(pinDir string) ([]Attachment, error) {
	var out []Attachment
	entries, err := os.ReadDir(filepath.Join(pinDir, "links"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read pinned links: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		i := strings.LastIndexByte(name, '-')
		if i < 0 {
			continue
		}
		where, hook := name[:i], name[i+1:]
		a := Attachment{Hook: hook, Mode: "tcx"}
		if hook == "xdp" {
			a.Mode = NetdevXDP // only native XDP is attached (AttachNetdevXDP)
		}
		a.Kind, _, _ = strings.Cut(where, "-")
		switch {
		case strings.HasPrefix(where, "cgroup"):
			a.Kind, a.Interface, a.Mode = "cgroup", strings.ReplaceAll(strings.TrimPrefix(where, "cgroup"), "_", "/"), "cgroup"
		case strings.HasPrefix(where, "container-"):
			a.Interface = where
			if idx, err := strconv.Atoi(strings.TrimPrefix(where, "container-")); err == nil {
				if ifc, err := net.InterfaceByIndex(idx); err == nil {
					a.Interface = ifc.Name
				}
			}
		default:
			_, a.Interface, _ = strings.Cut(where, "-")
		}
		out = append(out, a)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return out, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		for _, dir := range []struct {
			parent uint32
			hook   string
		}{{netlink.HANDLE_MIN_INGRESS, "ingress"}, {netlink.HANDLE_MIN_EGRESS, "egress"}} {
			filters, err := netlink.FilterList(l, dir.parent)
			if err != nil {
				continue // no clsact qdisc on this link
			}
			for _, f := range filters {
				if bf, ok := f.(*netlink.BpfFilter); ok && bf.Handle == clsactHandle {
					out = append(out, Attachment{Interface: l.Attrs().Name, Hook: dir.hook, Mode: "clsact"})
				}
			}
		}
	}
	return out, nil
}
