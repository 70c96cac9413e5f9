package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ErrNotFound is returned (wrapped) when a key is absent; it is ebpf.ErrKeyNotExist.
var ErrNotFound = ebpf.ErrKeyNotExist

// Set holds every kubedirect map. The ebpf tags are the maps' names in the BPF objects and under the
// pin directory, and the only place Go spells them: Names, FromMap, Open, Close and the loader all walk
// these fields (cilium/ebpf's LoadAndAssign reads the same tags).
type Set struct {
	Services  *ebpf.Map `ebpf:"kd_services"`
	Backends  *ebpf.Map `ebpf:"kd_backends"`
	Conntrack *ebpf.Map `ebpf:"kd_conntrack"`
	// ConntrackNew holds the flows not confirmed yet (CTNew); Conntrack the others.
	ConntrackNew *ebpf.Map `ebpf:"kd_ct_new"`
	Affinity     *ebpf.Map `ebpf:"kd_affinity"`
	Tunnel       *ebpf.Map `ebpf:"kd_tunnel"`
	Endpoints    *ebpf.Map `ebpf:"kd_endpoints"`
	NodeAddrs    *ebpf.Map `ebpf:"kd_node_addrs"`
	Config       *ebpf.Map `ebpf:"kd_config"`
	Metrics      *ebpf.Map `ebpf:"kd_metrics"`
	Events       *ebpf.Map `ebpf:"kd_events"`
	SockNAT      *ebpf.Map `ebpf:"kd_sock_nat"`
	SockAff      *ebpf.Map `ebpf:"kd_sock_affinity"`
	Frags        *ebpf.Map `ebpf:"kd_frags"`

	// agentRemoved counts the conntrack entries this process deleted, by table (the datapath counts
	// its own in kd_metrics): ConntrackEvictions needs every removal that was not an eviction.
	agentRemoved struct{ established, new atomic.Uint64 }
}

// Names lists every map the programs use, in Set's field order.
var Names = func() []string {
	var out []string
	for name := range new(Set).fields() {
		out = append(out, name)
	}
	return out
}()

// fields yields the name and the address of every map field of s.
func (s *Set) fields() iter.Seq2[string, **ebpf.Map] {
	return func(yield func(string, **ebpf.Map) bool) {
		v := reflect.ValueOf(s).Elem()
		for i := range v.NumField() {
			name, ok := v.Type().Field(i).Tag.Lookup("ebpf")
			if !ok {
				continue
			}
			if !yield(name, v.Field(i).Addr().Interface().(**ebpf.Map)) {
				return
			}
		}
	}
}

// FromMap builds a Set from maps keyed by name (missing names stay nil).
func FromMap(m map[string]*ebpf.Map) *Set {
	s := &Set{}
	for name, p := range s.fields() {
		*p = m[name]
	}
	return s
}

// ByName returns s's maps keyed by name (the inverse of FromMap).
func (s *Set) ByName() map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	for name, p := range s.fields() {
		out[name] = *p
	}
	return out
}

// Open adopts the maps pinned under dir (for example by a running agent).
func Open(dir string) (*Set, error) {
	s := &Set{}
	for name, p := range s.fields() {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("open pinned map %s: %w", name, err)
		}
		*p = m
	}
	return s, nil
}

// Close closes the file descriptors; pinned maps stay in the kernel.
func (s *Set) Close() error {
	var errs []error
	for _, p := range s.fields() {
		if *p != nil {
			errs = append(errs, (*p).Close())
		}
	}
	return errors.Join(errs...)
}

// Unpin removes every map's pin (the maps disappear once no program uses them).
func (s *Set) Unpin() error {
	var errs []error
	for _, p := range s.fields() {
		if m := *p; m != nil && m.IsPinned() {
			if err := m.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// UpdateService creates or replaces a frontend.
func (s *Set) UpdateService(k ServiceKey, v ServiceValue) error {
	return put(s.Services, k, v, "update service")
}

// DeleteService removes a frontend; deleting an absent one is not an error.
func (s *Set) DeleteService(k ServiceKey) error {
	return ignoreNotExist(s.Services.Delete(&k), "delete service")
}

// LookupService reads one frontend.
func (s *Set) LookupService(k ServiceKey) (ServiceValue, error) {
	var v ServiceValue
	err := s.Services.Lookup(&k, &v)
	return v, err
}

// UpdateServices creates or replaces the frontends keys[i] = vals[i], in one batch where the kernel
// has batch operations (BPF_MAP_UPDATE_BATCH), else one by one.
func (s *Set) UpdateServices(keys []ServiceKey, vals []ServiceValue) error {
	return batchUpdate(s.Services, keys, vals, "update services")
}

// IterateServices calls fn for every frontend until fn returns false.
func (s *Set) IterateServices(fn func(ServiceKey, ServiceValue) bool) error {
	return each(s.Services, func(k *ServiceKey, v *ServiceValue) bool { return fn(*k, *v) })
}

// UpdateBackend writes one backend slot. Write slots before raising
// ServiceValue.Count and lower Count before deleting slots, so the datapath
// never picks an empty slot.
func (s *Set) UpdateBackend(k BackendKey, v BackendValue) error {
	return put(s.Backends, k, v, "update backend")
}

// UpdateBackends writes the backend slots keys[i] = vals[i], as UpdateServices does frontends. Write
// slots before raising ServiceValue.Count, as for UpdateBackend.
func (s *Set) UpdateBackends(keys []BackendKey, vals []BackendValue) error {
	return batchUpdate(s.Backends, keys, vals, "update backends")
}

// batchUpdate writes keys[i] = vals[i] into m in one BPF_MAP_UPDATE_BATCH call (one syscall for all:
// a full sync writes tens of thousands of entries), or one by one on a kernel without batch operations.
func batchUpdate[K, V any](m *ebpf.Map, keys []K, vals []V, what string) error {
	if len(keys) != len(vals) {
		return fmt.Errorf("%s: %d keys, %d values", what, len(keys), len(vals))
	}
	if len(keys) == 0 {
		return nil
	}
	_, err := m.BatchUpdate(keys, vals, nil)
	if errors.Is(err, ebpf.ErrNotSupported) {
		for i := range keys {
			if err := m.Put(&keys[i], &vals[i]); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// DeleteBackend removes a backend slot; absent is not an error.
func (s *Set) DeleteBackend(k BackendKey) error {
	return ignoreNotExist(s.Backends.Delete(&k), "delete backend")
}

// IterateBackends calls fn for every backend slot until fn returns false.
func (s *Set) IterateBackends(fn func(BackendKey, BackendValue) bool) error {
	return each(s.Backends, func(k *BackendKey, v *BackendValue) bool { return fn(*k, *v) })
}

// TunnelKeyFor builds the LPM key of a pod CIDR.
func TunnelKeyFor(cidr netip.Prefix) TunnelKey {
	return TunnelKey{PrefixLen: uint32(cidr.Bits()), Addr: Addr4(cidr.Masked().Addr())}
}

// SetTunnel routes a remote node's pod CIDR through the overlay to nodeIP.
func (s *Set) SetTunnel(cidr netip.Prefix, nodeIP netip.Addr) error {
	return put(s.Tunnel, TunnelKeyFor(cidr), TunnelValue{NodeIP: Addr4(nodeIP)}, "set tunnel "+cidr.String())
}

// DeleteTunnel removes a pod CIDR route; absent is not an error.
func (s *Set) DeleteTunnel(cidr netip.Prefix) error {
	k := TunnelKeyFor(cidr)
	return ignoreNotExist(s.Tunnel.Delete(&k), "delete tunnel")
}

// IterateTunnels calls fn for every pod CIDR route until fn returns false.
func (s *Set) IterateTunnels(fn func(netip.Prefix, netip.Addr) bool) error {
	return each(s.Tunnel, func(k *TunnelKey, v *TunnelValue) bool {
		return fn(netip.PrefixFrom(netip.AddrFrom4(k.Addr), int(k.PrefixLen)), netip.AddrFrom4(v.NodeIP))
	})
}

// SetEndpoint registers a local pod.
func (s *Set) SetEndpoint(podIP netip.Addr, v EndpointValue) error {
	return put(s.Endpoints, Addr4(podIP), v, "set endpoint "+podIP.String())
}

// DeleteEndpoint removes a local pod; absent is not an error.
func (s *Set) DeleteEndpoint(podIP netip.Addr) error {
	k := Addr4(podIP)
	return ignoreNotExist(s.Endpoints.Delete(&k), "delete endpoint")
}

// IterateEndpoints calls fn for every local pod until fn returns false.
func (s *Set) IterateEndpoints(fn func(netip.Addr, EndpointValue) bool) error {
	return each(s.Endpoints, func(k *[4]byte, v *EndpointValue) bool { return fn(netip.AddrFrom4(*k), *v) })
}

// AddNodeAddr marks addr as one of this node's addresses (NodePorts answer on it).
func (s *Set) AddNodeAddr(addr netip.Addr) error {
	return put(s.NodeAddrs, Addr4(addr), uint32(1), "add node address "+addr.String())
}

// DeleteNodeAddr removes a node address; absent is not an error.
func (s *Set) DeleteNodeAddr(addr netip.Addr) error {
	k := Addr4(addr)
	return ignoreNotExist(s.NodeAddrs.Delete(&k), "delete node address")
}

// NodeAddrs4 lists the node addresses.
func (s *Set) NodeAddrs4() ([]netip.Addr, error) {
	var out []netip.Addr
	err := each(s.NodeAddrs, func(k *[4]byte, _ *uint32) bool { out = append(out, netip.AddrFrom4(*k)); return true })
	return out, err
}

// SetConfig writes the node configuration.
func (s *Set) SetConfig(c Config) error {
	if err := s.Config.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("set config: %w", err)
	}
	return nil
}

// GetConfig reads the node configuration.
func (s *Set) GetConfig() (Config, error) {
	var c Config
	err := s.Config.Lookup(uint32(0), &c)
	return c, err
}

// NetnsCookie returns the cookie of the calling thread's network namespace
// (SO_NETNS_COOKIE), the value of Config.HostNetns for the node's namespace.
func NetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open socket: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("read network namespace cookie: %w", err)
	}
	return c, nil
}

// MonotonicNow returns CLOCK_MONOTONIC in nanoseconds, the clock of
// ConntrackValue.Expires and AffinityValue.LastUsed (bpf_ktime_get_ns).
func MonotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// conntrackMaps are the maps that hold conntrack entries: confirmed flows,
// then new ones (a Set built without the second has only the first).
func (s *Set) conntrackMaps() []*ebpf.Map {
	if s.ConntrackNew == nil {
		return []*ebpf.Map{s.Conntrack}
	}
	return []*ebpf.Map{s.Conntrack, s.ConntrackNew}
}

// ConntrackCount returns the number of entries (both directions count).
func (s *Set) ConntrackCount() (int, error) {
	n := 0
	err := s.IterateConntrack(func(ConntrackKey, ConntrackValue) bool { n++; return true })
	return n, err
}

// ConntrackGC deletes expired entries and returns how many it removed and how
// many remain.
func (s *Set) ConntrackGC() (deleted, live int, err error) {
	tables, err := s.ConntrackGCTables()
	deleted, live = ConntrackGCTotals(tables)
	return deleted, live, err
}

// ConntrackGCTotals sums the deleted and live entries of one collection's tables.
func ConntrackGCTotals(tables []ConntrackTableGC) (deleted, live int) {
	for _, t := range tables {
		deleted += t.Deleted
		live += t.Live
	}
	return deleted, live
}

// ConntrackTableGC is what one garbage collection found in one conntrack table.
type ConntrackTableGC struct {
	// Table is "established" (kd_conntrack) or "new" (kd_ct_new).
	Table string
	// Deleted entries had expired; Live had not; Entries is how many the table held after the
	// deletions (live and expired ones the datapath renewed meanwhile).
	Deleted, Live, Entries int
}

// ConntrackGCTables deletes expired entries and reports per table.
func (s *Set) ConntrackGCTables() ([]ConntrackTableGC, error) {
	var out []ConntrackTableGC
	for _, m := range s.conntrackMaps() {
		t := ConntrackTableGC{Table: s.conntrackTable(m)}
		dead, l, err := expiredConntrack(m, MonotonicNow())
		t.Live = l
		if err != nil {
			return append(out, t), err
		}
		t.Deleted = deleteExpiredConntrack(m, dead, MonotonicNow())
		s.countRemoved(m, t.Deleted)
		t.Entries = l + len(dead) - t.Deleted
		out = append(out, t)
	}
	return out, nil
}

// Conntrack table names (ConntrackTableGC.Table, metric labels).
const (
	ConntrackTableEstablished = "established"
	ConntrackTableNew         = "new"
)

func (s *Set) conntrackTable(m *ebpf.Map) string {
	if m == s.ConntrackNew {
		return ConntrackTableNew
	}
	return ConntrackTableEstablished
}

// countRemoved records n entries this process deleted from conntrack table m.
func (s *Set) countRemoved(m *ebpf.Map, n int) {
	if m == s.ConntrackNew {
		s.agentRemoved.new.Add(uint64(n))
	} else {
		s.agentRemoved.established.Add(uint64(n))
	}
}

// ConntrackEvictions returns, per table, how many entries the kernel evicted to make room (a full
// LRU table drops its least recently used entry instead of refusing a new flow): every entry the
// datapath added, less the ones the datapath and this process removed and the ones still there
// (tables from the garbage collection that just ran). BPF cannot see an eviction happen, so this
// is the count it leaves behind. Entries this process's predecessors removed count as evicted:
// callers report the growth from their first reading. Exact while no flow starts; with flows
// starting during the collection's scan it errs low.
func (s *Set) ConntrackEvictions(tables []ConntrackTableGC) (map[string]int64, error) {
	c, err := s.readSlots(MetricCTNewAdded, MetricCTNewRemoved, MetricCTAdded, MetricCTRemoved)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, t := range tables {
		switch t.Table {
		case ConntrackTableNew:
			out[t.Table] = int64(c[0]) - int64(c[1]) - int64(s.agentRemoved.new.Load()) - int64(t.Entries)
		default:
			out[t.Table] = int64(c[2]) - int64(c[3]) - int64(s.agentRemoved.established.Load()) - int64(t.Entries)
		}
	}
	return out, nil
}

// readSlots returns the packet counts of kd_metrics slots, summed over CPUs.
func (s *Set) readSlots(slots ...int) ([]uint64, error) {
	out := make([]uint64, len(slots))
	for i, slot := range slots {
		var per []Metric
		if err := s.Metrics.Lookup(uint32(slot), &per); err != nil {
			return nil, fmt.Errorf("read metrics slot %d: %w", slot, err)
		}
		for _, m := range per {
			out[i] += m.Packets
		}
	}
	return out, nil
}

// expiredConntrack scans m for entries expired at now.
func expiredConntrack(m *ebpf.Map, now uint64) (dead []ConntrackKey, live int, err error) {
	dead, err = collect(m, func(_ *ConntrackKey, v *ConntrackValue) bool {
		if v.Expires >= now {
			live++
		}
		return v.Expires < now
	})
	return dead, live, err
}

// deleteExpiredConntrack deletes the keys of m that are still expired at now:
// the datapath may have created a new flow under a key since the scan.
func deleteExpiredConntrack(m *ebpf.Map, keys []ConntrackKey, now uint64) int {
	n := 0
	var v ConntrackValue
	for i := range keys {
		if err := m.Lookup(&keys[i], &v); err != nil || v.Expires >= now {
			continue
		}
		if m.Delete(&keys[i]) == nil {
			n++
		}
	}
	return n
}

// IterateConntrack calls fn for every entry, confirmed flows first, until fn
// returns false.
func (s *Set) IterateConntrack(fn func(ConntrackKey, ConntrackValue) bool) error {
	more := true
	for _, m := range s.conntrackMaps() {
		err := each(m, func(k *ConntrackKey, v *ConntrackValue) bool { more = fn(*k, *v); return more })
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// deleteConntrackMatching removes the entries that match from every conntrack map.
func (s *Set) deleteConntrackMatching(match func(*ConntrackKey, *ConntrackValue) bool) (int, error) {
	total := 0
	for _, m := range s.conntrackMaps() {
		n, err := deleteMatching(m, match)
		s.countRemoved(m, n)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// PurgeAffinity removes the ClientIP affinity entries of a service (call it
// when the service goes away: the datapath itself ignores entries whose
// backend left the service), of the tc programs and of the socket hooks, and
// returns how many.
func (s *Set) PurgeAffinity(serviceID uint32) (int, error) {
	n, err := deleteMatching(s.Affinity, func(k *AffinityKey, _ *AffinityValue) bool { return k.ServiceID == serviceID })
	if err != nil || s.SockAff == nil {
		return n, err
	}
	m, err := deleteMatching(s.SockAff, func(k *SockAffinityKey, _ *AffinityValue) bool { return k.ServiceID == serviceID })
	return n + m, err
}

// each calls fn for every entry of m until fn returns false: the one iterate loop of this package.
func each[K, V any](m *ebpf.Map, fn func(*K, *V) bool) error {
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !fn(&k, &v) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate %s: %w", m, err)
	}
	return nil
}

// collect returns the keys of the entries of m that match selects.
func collect[K, V any](m *ebpf.Map, match func(*K, *V) bool) ([]K, error) {
	var keys []K
	err := each(m, func(k *K, v *V) bool {
		if match(k, v) {
			keys = append(keys, *k)
		}
		return true
	})
	return keys, err
}

// deleteMatching removes every entry of m that match selects and returns how many, in one pass over
// the map (deleting while iterating a hash map restarts the walk, so the keys are collected first).
func deleteMatching[K, V any](m *ebpf.Map, match func(*K, *V) bool) (int, error) {
	keys, err := collect(m, match)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range keys {
		if m.Delete(&keys[i]) == nil {
			n++
		}
	}
	return n, nil
}

// Counters are the datapath counters summed over CPUs, by name.
type Counters struct {
	// Verdicts by VerdictNames value.
	Verdicts map[string]Metric
	// Drops by DropReasonNames value.
	Drops map[string]Metric
	// EventsLost is the number of flow events the full ring buffer could not take.
	EventsLost uint64
	// Other holds every other kd_metrics slot that counted something, as "slot_N": a counter the C side
	// adds shows in the metrics before Go names it.
	Other map[string]Metric
}

// ReadMetrics sums kd_metrics over all CPUs.
func (s *Set) ReadMetrics() (Counters, error) {
	c := Counters{Verdicts: map[string]Metric{}, Drops: map[string]Metric{}, Other: map[string]Metric{}}
	for i := 0; i < MetricSlots; i++ {
		var per []Metric
		if err := s.Metrics.Lookup(uint32(i), &per); err != nil {
			return c, fmt.Errorf("read metrics: %w", err)
		}
		var sum Metric
		for _, m := range per {
			sum.Packets += m.Packets
			sum.Bytes += m.Bytes
		}
		if n, ok := VerdictNames[i]; ok {
			c.Verdicts[n] = sum
		} else if n, ok := DropReasonNames[i]; ok {
			c.Drops[n] = sum
		} else if i == MetricEventLost {
			c.EventsLost = sum.Packets
		} else if i >= MetricCTNewAdded && i <= MetricCTRemoved {
			continue // conntrack bookkeeping: ConntrackEvictions
		} else if sum != (Metric{}) {
			c.Other[fmt.Sprintf("slot_%d", i)] = sum
		}
	}
	return c, nil
}

// put writes one entry; what names the write in its error.
func put[K, V any](m *ebpf.Map, k K, v V, what string) error {
	if err := m.Put(&k, &v); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func ignoreNotExist(err error, what string) error {
	if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// DecodeEvent decodes one kd_events ring buffer record (ringbuf.Record.RawSample).
func DecodeEvent(raw []byte) (Event, error) {
	var e Event
	if _, err := binary.Decode(raw, binary.NativeEndian, &e); err != nil {
		return e, fmt.Errorf("decode event: %w", err)
	}
	return e, nil
}

// DeleteConntrackForBackend removes the conntrack entries (both directions)
// of flows translated to backend addr:port/proto, so their next packet picks
// a live backend. The agent calls it when an endpoint goes away (kube-proxy
// does the same for UDP; TCP flows to a dead backend fail either way).
// Returns the number of entries removed.
func (s *Set) DeleteConntrackForBackend(addr netip.Addr, port uint16, proto uint8) (int, error) {
	a := Addr4(addr)
	return s.deleteConntrackMatching(func(k *ConntrackKey, v *ConntrackValue) bool {
		return k.Proto == proto && translatedTo(k, v, a, port)
	})
}

// translatedTo reports whether entry k, v belongs to a flow translated to backend a:port: the forward
// entry names it as its NAT target, the reply entry as its source.
func translatedTo(k *ConntrackKey, v *ConntrackValue, a [4]byte, port uint16) bool {
	if k.Dir == CTForward {
		return v.NATAddr == a && v.NATPort == port
	}
	return k.Dir == CTReply && k.SrcAddr == a && k.SrcPort == port
}

// DeleteConntrackForBackends removes the conntrack entries (both directions)
// of service serviceID's proto flows translated to any of backends, in one
// pass over the table, so their next packet picks a current backend. The
// agent calls it for UDP when endpoints go away or the Service does (as
// kube-proxy clears UDP conntrack entries): a UDP client with a fixed source
// port would otherwise keep sending to the removed endpoint, or to a new pod
// that reused its address. Returns the number of entries removed.
func (s *Set) DeleteConntrackForBackends(serviceID uint32, proto uint8, backends []netip.AddrPort) (int, error) {
	type be struct {
		a [4]byte
		p uint16
	}
	gone := make(map[be]bool, len(backends))
	for _, b := range backends {
		gone[be{Addr4(b.Addr()), b.Port()}] = true
	}
	return s.deleteConntrackMatching(func(k *ConntrackKey, v *ConntrackValue) bool {
		if k.Proto != proto || v.ServiceID != serviceID {
			return false
		}
		if k.Dir == CTForward {
			return gone[be{v.NATAddr, v.NATPort}]
		}
		return k.Dir == CTReply && gone[be{k.SrcAddr, k.SrcPort}]
	})
}

// IterateAffinity calls fn for every ClientIP affinity entry of the tc programs until fn returns false.
func (s *Set) IterateAffinity(fn func(AffinityKey, AffinityValue) bool) error {
	return each(s.Affinity, func(k *AffinityKey, v *AffinityValue) bool { return fn(*k, *v) })
}
