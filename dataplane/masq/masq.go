// Package masq installs the node's pod egress masquerade: an nftables table of kubedirect's own that
// rewrites the source of pod traffic leaving the node for anything outside the non-masquerade CIDRs
// (by default the cluster's pod range) to the node's address, as ip-masq-agent, flannel and Cilium's
// iptables masquerading do. The kernel's conntrack undoes it on replies.
//
// The BPF datapath translates Services before the stack sees a pod's packet (from_container), so the
// rule matches the post-DNAT destination: a ClusterIP whose backend is a host-network endpoint on
// another node leaves with the node's address, and its reply is un-masqueraded by conntrack before
// to_container reverse-NATs it for the pod.
package masq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Table is the name of the nftables table (family ip) the agent owns.
const Table = "kubedirect"

// chain is the postrouting NAT chain inside Table.
const chain = "masquerade"

// Rules is what the table expresses.
type Rules struct {
	// PodCIDR is this node's pod range: only packets from it are masqueraded.
	PodCIDR netip.Prefix
	// NonMasquerade are the destinations that keep the pod's address (the cluster pod range at least).
	NonMasquerade []netip.Prefix
	// NodePortFirst..NodePortLast is the NodePort range and NodeAddr the node's address: TCP and UDP
	// from a source port inside the range are SNATed to NodeAddr with a port above it. The NIC program
	// sees replies before conntrack un-NATs them, and one to a node address on a NodePort port would be
	// taken for a new NodePort flow (Cilium's SNAT keeps to 32768-65535 for the same reason). Other
	// ports are kept as masquerade keeps them (pods' ephemeral ports, 32768-60999, lie above the range).
	// Zero values turn this off.
	NodeAddr                    netip.Addr
	NodePortFirst, NodePortLast uint16
	// TunnelPort is the UDP port of the nodes' tunnel (VXLAN). Its packets, node to node and never
	// NATed, skip conntrack (notrack before conntrack sees them, on the way in and out): the table's
	// NAT chain turns conntrack on for the node, and each connection through the tunnel would cost an
	// entry for its outer flow (the inner flow's hash picks the source port) on both nodes, plus the
	// hooks' work on every packet. 0: tracked as any other flow.
	TunnelPort uint16
}

// Option configures the netlink connection.
type Option func(*[]nftables.ConnOption)

// InNetNS works in the network namespace of fd instead of the caller's (tests).
func InNetNS(fd int) Option {
	return func(o *[]nftables.ConnOption) { *o = append(*o, nftables.WithNetNSFd(fd)) }
}

func conn(opts []Option) (*nftables.Conn, error) {
	var co []nftables.ConnOption
	for _, o := range opts {
		o(&co)
	}
	c, err := nftables.New(co...)
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	return c, nil
}

// Sync replaces the table's content with r in one transaction: there is no moment without the rules,
// and whatever an earlier agent (or a person) left in the table is gone.
func Sync(r Rules, opts ...Option) error {
	if !r.PodCIDR.IsValid() || !r.PodCIDR.Addr().Is4() {
		return fmt.Errorf("sync masquerade: pod CIDR %s is not IPv4", r.PodCIDR)
	}
	c, err := conn(opts)
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: Table}
	// add (no-op if present), delete, add: the usual way to start from an empty table atomically.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	if r.TunnelPort != 0 {
		for _, h := range []struct {
			name string
			hook *nftables.ChainHook
		}{{"tunnel-in", nftables.ChainHookPrerouting}, {"tunnel-out", nftables.ChainHookOutput}} {
			// udp dport <tunnel port> notrack
			raw := c.AddChain(&nftables.Chain{Name: h.name, Table: t, Type: nftables.ChainTypeFilter,
				Hooknum: h.hook, Priority: nftables.ChainPriorityRaw})
			c.AddRule(&nftables.Rule{Table: t, Chain: raw, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(r.TunnelPort)},
				&expr.Notrack{},
			}})
		}
	}
	ch := c.AddChain(&nftables.Chain{Name: chain, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	src := matchPrefix(ipSaddrOff, r.PodCIDR)
	for _, p := range nonMasq(r.NonMasquerade) {
		// ip saddr <pod CIDR> ip daddr <p> return
		c.AddRule(&nftables.Rule{Table: t, Chain: ch,
			Exprs: slices.Concat(src, matchPrefix(ipDaddrOff, p), []expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}})})
	}
	if r.NodeAddr.Is4() && r.NodePortFirst != 0 && r.NodePortLast >= r.NodePortFirst && r.NodePortLast < 65535 {
		// ip saddr <pod CIDR> meta l4proto tcp|udp th sport <NodePort range>
		//   snat to <node>:<NodePort last + 1>-65535
		// (masquerade cannot be given a port range through this library: it sends no
		// NF_NAT_RANGE_PROTO_SPECIFIED flag, so the kernel would keep the port)
		node := r.NodeAddr.As4()
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: slices.Concat(src, []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
				&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(r.NodePortFirst), ToData: be16(r.NodePortLast)},
				&expr.Immediate{Register: 1, Data: node[:]},
				&expr.Immediate{Register: 2, Data: be16(r.NodePortLast + 1)},
				&expr.Immediate{Register: 3, Data: be16(65535)},
				&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2,
					RegProtoMax: 3, Specified: true},
			})})
		}
	}
	// ip saddr <pod CIDR> masquerade
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: slices.Concat(src, []expr.Any{&expr.Masq{}})})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("sync masquerade table %s: %w", Table, err)
	}
	return nil
}

// Remove deletes the table; a missing table is not an error (uninstall, or masquerading turned off).
func Remove(opts ...Option) error {
	c, err := conn(opts)
	if err != nil {
		return err
	}
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: Table})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove masquerade table %s: %w", Table, err)
	}
	return nil
}

// nonMasq keeps the IPv4 prefixes, masked; a /0 means masquerading nothing, which the caller should
// express by not calling Sync, but it stays correct here.
func nonMasq(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.IsValid() && p.Addr().Is4() && !slices.Contains(out, p.Masked()) {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Offsets of the IPv4 source and destination addresses in the network header.
const (
	ipSaddrOff = 12
	ipDaddrOff = 16
)

// matchPrefix loads the address at off of the IPv4 header and compares it, masked, with p.
func matchPrefix(off uint32, p netip.Prefix) []expr.Any {
	a := p.Masked().Addr().As4()
	mask := net.CIDRMask(p.Bits(), 32)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
