package inspect

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Filter selects the rows of the inspect tables.
type Filter struct {
	// Service keeps the rows of one Service ("namespace/name").
	Service string
	// IP keeps the rows that mention the address anywhere (client, frontend, backend, tunnel peer).
	IP netip.Addr
}

// Tables are the views `kubedirect inspect` prints, by name.
var Tables = []string{"services", "backends", "tunnels", "endpoints", "conntrack", "affinity"}

// ServiceRow is one frontend of `inspect services -o json`.
type ServiceRow struct {
	Node string `json:"node"`
	// Service is the Service port ("namespace/name:port/PROTO"), "" when no Service has the frontend.
	Service string `json:"service"`
	// Kind is ClusterIP, NodePort or External; Frontend the address ("*:PORT" for a NodePort).
	Kind     string   `json:"kind"`
	Frontend string   `json:"frontend"`
	Flags    []string `json:"flags,omitempty"`
	// Backends are the all-table backends, LocalBackends this node's (externalTrafficPolicy Local).
	Backends      []NamedBackend `json:"backends"`
	LocalBackends []NamedBackend `json:"localBackends,omitempty"`
}

// NamedBackend is a backend and the node it runs on.
type NamedBackend struct {
	Address netip.AddrPort `json:"address"`
	Node    string         `json:"node"`
}

func (b NamedBackend) String() string { return fmt.Sprintf("%s (node %s)", b.Address, b.Node) }

func (c *Cluster) named(self string, slots []BackendSlot, count uint16) []NamedBackend {
	var out []NamedBackend
	for _, s := range slots {
		if s.Slot < count {
			out = append(out, NamedBackend{Address: s.AddrPort(), Node: c.backendNode(self, s.Backend)})
		}
	}
	return out
}

// serviceIDs names the backend tables of d by the Service port whose frontends use them.
func (c *Cluster) serviceIDs(d *Dump) map[uint32]string {
	svc := map[uint32]string{}
	for _, fe := range d.Frontends {
		if n := c.PortName(fe.MapKey()); n != "" {
			svc[fe.ServiceID] = n
		}
	}
	return svc
}

// collect turns the entries of every dump into rows, keeping those row accepts; row gets the dump's
// Service names by ID (serviceIDs).
func collect[E, R any](c *Cluster, dumps []*Dump, entries func(*Dump) []E, row func(d *Dump, svc map[uint32]string, e E) (R, bool)) []R {
	var out []R
	for _, d := range dumps {
		svc := c.serviceIDs(d)
		for _, e := range entries(d) {
			if r, ok := row(d, svc, e); ok {
				out = append(out, r)
			}
		}
	}
	return out
}

// keepsService reports whether a row of the Service port (namespace/name:port/proto, or "") passes the
// filter's Service.
func (f Filter) keepsService(port string) bool {
	return f.Service == "" || serviceOf(port) == f.Service
}

func serviceOf(port string) string {
	s, _, _ := strings.Cut(port, ":")
	return s
}

// ServiceRows lists every node's frontends in a user's terms.
func (c *Cluster) ServiceRows(dumps []*Dump, f Filter) []ServiceRow {
	return collect(c, dumps, func(d *Dump) []Frontend { return d.Frontends }, func(d *Dump, _ map[uint32]string, fe Frontend) (ServiceRow, bool) {
		r := ServiceRow{Node: d.Node, Service: c.PortName(fe.MapKey()), Kind: FrontendKind(fe), Frontend: FrontendAddr(fe) + "/" + fe.Protocol,
			Flags:         fe.Flags,
			Backends:      c.named(d.Node, d.SlotsOf(fe.ServiceID, "all"), fe.Count),
			LocalBackends: c.named(d.Node, d.SlotsOf(fe.ServiceID, "local"), fe.LocalCount)}
		return r, f.keepsService(r.Service) &&
			(!f.IP.IsValid() || fe.Address == f.IP || slices.ContainsFunc(r.Backends, func(b NamedBackend) bool { return b.Address.Addr() == f.IP }))
	})
}

// writeTable prints header and rows as aligned columns (cells separated by tabs).
func writeTable(w io.Writer, header string, rows [][]any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		for i, c := range r {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// cells turns rows into table cells with row.
func cells[T any](rows []T, row func(T) []any) [][]any {
	out := make([][]any, len(rows))
	for i, r := range rows {
		out[i] = row(r)
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinBackends(bs []NamedBackend) string {
	if len(bs) == 0 {
		return "(none)"
	}
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = b.String()
	}
	return strings.Join(parts, ", ")
}

// WriteServices prints one line per frontend:
// "demo-worker  default/web:80/TCP  ClusterIP  10.96.4.1:80/TCP -> 10.244.1.5:8080 (node demo-worker), ...".
func WriteServices(w io.Writer, rows []ServiceRow) error {
	return writeTable(w, "NODE\tSERVICE\tTYPE\tFRONTEND\t\tBACKENDS", cells(rows, func(r ServiceRow) []any {
		backends := joinBackends(r.Backends)
		if slices.Contains(r.Flags, "externalLocal") || slices.Contains(r.Flags, "internalLocal") {
			backends += "; local: " + joinBackends(r.LocalBackends)
		}
		return []any{r.Node, orDash(r.Service), r.Kind, r.Frontend, "->", backends}
	}))
}

// BackendRow is one backend slot of `inspect backends -o json`.
type BackendRow struct {
	Node      string `json:"node"`
	Service   string `json:"service"`
	ServiceID uint32 `json:"serviceID"`
	Table     string `json:"table"`
	Slot      uint16 `json:"slot"`
	NamedBackend
}

// BackendRows lists every node's backend slots with the Service whose frontends use them.
func (c *Cluster) BackendRows(dumps []*Dump, f Filter) []BackendRow {
	return collect(c, dumps, func(d *Dump) []BackendSlot { return d.Backends }, func(d *Dump, svc map[uint32]string, b BackendSlot) (BackendRow, bool) {
		r := BackendRow{Node: d.Node, Service: svc[b.ServiceID], ServiceID: b.ServiceID, Table: b.Table, Slot: b.Slot,
			NamedBackend: c.named(d.Node, []BackendSlot{b}, b.Slot+1)[0]}
		return r, f.keepsService(r.Service) && (!f.IP.IsValid() || b.Address == f.IP)
	})
}

// WriteBackends prints the backend slots.
func WriteBackends(w io.Writer, rows []BackendRow) error {
	return writeTable(w, "NODE\tSERVICE\tID\tTABLE\tSLOT\tBACKEND\tBACKEND NODE", cells(rows, func(r BackendRow) []any {
		return []any{r.Node, orDash(r.Service), r.ServiceID, r.Table, r.Slot, r.Address, r.NamedBackend.Node}
	}))
}

// TunnelRow is one tunnel of `inspect tunnels -o json`.
type TunnelRow struct {
	Node     string       `json:"node"`
	PodCIDR  netip.Prefix `json:"podCIDR"`
	Peer     netip.Addr   `json:"peer"`
	PeerNode string       `json:"peerNode"`
}

// TunnelRows lists every node's tunnels with the peer's node name.
func (c *Cluster) TunnelRows(dumps []*Dump, f Filter) []TunnelRow {
	return collect(c, dumps, func(d *Dump) []Tunnel { return d.Tunnels }, func(d *Dump, _ map[uint32]string, t Tunnel) (TunnelRow, bool) {
		return TunnelRow{Node: d.Node, PodCIDR: t.PodCIDR, Peer: t.NodeIP, PeerNode: c.NodeName(t.NodeIP)},
			!f.IP.IsValid() || t.NodeIP == f.IP || t.PodCIDR.Contains(f.IP)
	})
}

// WriteTunnels prints the tunnels.
func WriteTunnels(w io.Writer, rows []TunnelRow) error {
	return writeTable(w, "NODE\tPOD CIDR\tPEER\tPEER NODE", cells(rows, func(r TunnelRow) []any {
		return []any{r.Node, r.PodCIDR, r.Peer, orDash(r.PeerNode)}
	}))
}

// EndpointRow is one local pod of `inspect endpoints -o json`.
type EndpointRow struct {
	Node    string     `json:"node"`
	Address netip.Addr `json:"address"`
	Pod     string     `json:"pod"`
	Ifindex uint32     `json:"ifindex"`
	MAC     string     `json:"mac"`
}

// EndpointRows lists every node's local pods with their names.
func (c *Cluster) EndpointRows(dumps []*Dump, f Filter) []EndpointRow {
	return collect(c, dumps, func(d *Dump) []Endpoint { return d.Endpoints }, func(d *Dump, _ map[uint32]string, e Endpoint) (EndpointRow, bool) {
		return EndpointRow{Node: d.Node, Address: e.Address, Pod: c.PodName(e.Address), Ifindex: e.Ifindex, MAC: e.MAC},
			!f.IP.IsValid() || e.Address == f.IP
	})
}

// WriteEndpoints prints the local pods.
func WriteEndpoints(w io.Writer, rows []EndpointRow) error {
	return writeTable(w, "NODE\tPOD IP\tPOD\tIFINDEX\tMAC", cells(rows, func(r EndpointRow) []any {
		return []any{r.Node, r.Address, orDash(r.Pod), r.Ifindex, r.MAC}
	}))
}

// ConntrackRow is one flow entry of `inspect conntrack -o json`, in a user's terms: a forward entry's
// client, frontend and chosen backend; a reply entry's backend, client and the frontend the reply
// comes from.
type ConntrackRow struct {
	Node      string         `json:"node"`
	Direction string         `json:"direction"`
	Protocol  string         `json:"protocol"`
	Service   string         `json:"service"`
	Client    netip.AddrPort `json:"client"`
	Frontend  netip.AddrPort `json:"frontend"`
	Backend   netip.AddrPort `json:"backend"`
	// TunnelPeer is the node the flow was forwarded to or came from ("" when none).
	TunnelPeer string   `json:"tunnelPeer,omitempty"`
	Flags      []string `json:"flags,omitempty"`
	State      []string `json:"state,omitempty"`
	ExpiresIn  Duration `json:"expiresIn"`
}

// ConntrackRows lists every node's conntrack entries in a user's terms.
func (c *Cluster) ConntrackRows(dumps []*Dump, f Filter) []ConntrackRow {
	return collect(c, dumps, func(d *Dump) []Conntrack { return d.Conntrack }, func(d *Dump, svc map[uint32]string, e Conntrack) (ConntrackRow, bool) {
		r := ConntrackRow{Node: d.Node, Direction: e.Direction, Protocol: e.Protocol, Service: svc[e.ServiceID],
			Flags: e.Flags, State: e.State, ExpiresIn: e.ExpiresIn}
		if e.Direction == "forward" {
			r.Client, r.Frontend, r.Backend = e.Source, e.Destination, e.NAT
		} else {
			r.Backend, r.Client, r.Frontend = e.Source, e.Destination, e.NAT
			if e.Client.IsValid() {
				r.Client = netip.AddrPortFrom(e.Client, r.Client.Port())
			}
		}
		if e.TunnelPeer.IsValid() {
			r.TunnelPeer = c.nodeAddr(e.TunnelPeer)
		}
		return r, f.keepsService(r.Service) &&
			(!f.IP.IsValid() || slices.Contains([]netip.Addr{r.Client.Addr(), r.Frontend.Addr(), r.Backend.Addr(), e.TunnelPeer}, f.IP))
	})
}

// WriteConntrack prints the flows.
func WriteConntrack(w io.Writer, rows []ConntrackRow) error {
	return writeTable(w, "NODE\tDIR\tPROTO\tSERVICE\tCLIENT\tFRONTEND\tBACKEND\tPEER\tSTATE\tEXPIRES", cells(rows, func(r ConntrackRow) []any {
		return []any{r.Node, r.Direction, r.Protocol, orDash(r.Service), r.Client, r.Frontend, r.Backend, orDash(r.TunnelPeer),
			orDash(strings.Join(append(slices.Clone(r.Flags), r.State...), ",")), time.Duration(r.ExpiresIn).Round(time.Second)}
	}))
}

// AffinityRow is one ClientIP affinity entry of `inspect affinity -o json`.
type AffinityRow struct {
	Node    string       `json:"node"`
	Service string       `json:"service"`
	Client  netip.Addr   `json:"client"`
	Backend NamedBackend `json:"backend"`
	IdleFor Duration     `json:"idleFor"`
}

// AffinityRows lists every node's affinity entries.
func (c *Cluster) AffinityRows(dumps []*Dump, f Filter) []AffinityRow {
	return collect(c, dumps, func(d *Dump) []Affinity { return d.Affinity }, func(d *Dump, svc map[uint32]string, a Affinity) (AffinityRow, bool) {
		r := AffinityRow{Node: d.Node, Service: svc[a.ServiceID], Client: a.Client, IdleFor: a.IdleFor,
			Backend: c.named(d.Node, []BackendSlot{{Backend: a.Backend}}, 1)[0]}
		return r, f.keepsService(r.Service) && (!f.IP.IsValid() || a.Client == f.IP || a.Backend.Address == f.IP)
	})
}

// WriteAffinity prints the affinity entries.
func WriteAffinity(w io.Writer, rows []AffinityRow) error {
	return writeTable(w, "NODE\tSERVICE\tCLIENT\tBACKEND\tIDLE", cells(rows, func(r AffinityRow) []any {
		return []any{r.Node, orDash(r.Service), r.Client, r.Backend, time.Duration(r.IdleFor).Round(time.Second)}
	}))
}
