package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// memTable is an in-memory Table.
type memTable struct {
	svcs  map[maps.ServiceKey]maps.ServiceValue
	bes   map[maps.BackendKey]maps.BackendValue
	limit int // max services entries; 0 = unlimited
	// afterWrite, when set, runs after every write (to check what packets would see at that moment).
	afterWrite func()
}

func (m *memTable) wrote() {
	if m.afterWrite != nil {
		m.afterWrite()
	}
}

func newMem() *memTable {
	return &memTable{svcs: map[maps.ServiceKey]maps.ServiceValue{}, bes: map[maps.BackendKey]maps.BackendValue{}}
}

var errFull = errors.New("map full")

func (m *memTable) UpdateService(k maps.ServiceKey, v maps.ServiceValue) error {
	if _, ok := m.svcs[k]; !ok && m.limit > 0 && len(m.svcs) >= m.limit {
		return errFull
	}
	m.svcs[k] = v
	m.wrote()
	return nil
}
func (m *memTable) DeleteService(k maps.ServiceKey) error { delete(m.svcs, k); m.wrote(); return nil }
func (m *memTable) UpdateBackend(k maps.BackendKey, v maps.BackendValue) error {
	m.bes[k] = v
	m.wrote()
	return nil
}
func (m *memTable) DeleteBackend(k maps.BackendKey) error { delete(m.bes, k); m.wrote(); return nil }
func (m *memTable) IterateServices(fn func(maps.ServiceKey, maps.ServiceValue) bool) error {
	for k, v := range m.svcs {
		if !fn(k, v) {
			break
		}
	}
	return nil
}
func (m *memTable) IterateBackends(fn func(maps.BackendKey, maps.BackendValue) bool) error {
	for k, v := range m.bes {
		if !fn(k, v) {
			break
		}
	}
	return nil
}

func be(ip string) maps.BackendValue {
	return maps.BackendValue{Addr: maps.Addr4(netip.MustParseAddr(ip)), Port: 8080, Flags: maps.BackendLocal}
}

func portState(name string, fe maps.ServiceKey, bes ...maps.BackendValue) PortState {
	return PortState{Name: name, Frontends: map[maps.ServiceKey]uint32{fe: 0}, All: bes, Local: bes}
}

// check verifies that the table holds exactly the states given (by frontend).
func checkTable(t *testing.T, m *memTable, states ...PortState) {
	t.Helper()
	nFE, nBE := 0, 0
	for _, s := range states {
		for k := range s.Frontends {
			v, ok := m.svcs[k]
			if !ok || int(v.Count) != len(s.All) || int(v.LocalCount) != len(s.Local) {
				t.Fatalf("frontend %+v: %+v %v, want count %d", k, v, ok, len(s.All))
			}
			for i, b := range s.All {
				if m.bes[maps.BackendKey{ServiceID: v.ID, Slot: uint16(i), Table: maps.TableAll}] != b {
					t.Fatalf("slot %d of %s", i, s.Name)
				}
			}
			nFE++
		}
		nBE += len(s.All) + len(s.Local)
	}
	if len(m.svcs) != nFE || len(m.bes) != nBE {
		t.Fatalf("table has %d frontends %d backends, want %d %d", len(m.svcs), len(m.bes), nFE, nBE)
	}
}

func TestProgrammerIncremental(t *testing.T) {
	m := newMem()
	p := NewProgrammer(m)
	a := portState("ns/a:80/TCP", key("10.96.0.1", 80, maps.ProtoTCP, maps.ScopeCluster), be("10.244.1.2"))
	b := portState("ns/b:80/TCP", key("10.96.0.2", 80, maps.ProtoTCP, maps.ScopeCluster), be("10.244.1.3"))
	if err := p.Apply("ns/a", ServiceState{Ports: []PortState{a}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply("ns/b", ServiceState{Ports: []PortState{b}}); err != nil {
		t.Fatal(err)
	}
	checkTable(t, m, a, b)
	// unchanged: no writes
	w := p.Writes
	if err := p.Apply("ns/a", ServiceState{Ports: []PortState{a}}); err != nil || p.Writes != w {
		t.Fatalf("re-apply wrote %d entries (%v)", p.Writes-w, err)
	}
	// scale a to 3: two new slots per table + one frontend update, nothing of b
	a3 := portState(a.Name, key("10.96.0.1", 80, maps.ProtoTCP, maps.ScopeCluster), be("10.244.1.2"), be("10.244.1.4"), be("10.244.1.5"))
	w = p.Writes
	if err := p.Apply("ns/a", ServiceState{Ports: []PortState{a3}}); err != nil {
		t.Fatal(err)
	}
	if got := p.Writes - w; got != 5 {
		t.Errorf("scale up wrote %d entries, want 5", got)
	}
	checkTable(t, m, a3, b)
	// scale to 0
	a0 := portState(a.Name, key("10.96.0.1", 80, maps.ProtoTCP, maps.ScopeCluster))
	if err := p.Apply("ns/a", ServiceState{Ports: []PortState{a0}}); err != nil {
		t.Fatal(err)
	}
	checkTable(t, m, a0, b)
	// delete a
	if err := p.Apply("ns/a", ServiceState{}); err != nil {
		t.Fatal(err)
	}
	checkTable(t, m, b)
	if s, f, n := p.Counts(); s != 1 || f != 1 || n != 1 {
		t.Errorf("counts %d %d %d", s, f, n)
	}
}

func TestProgrammerAdoptKeepsEntries(t *testing.T) {
	m := newMem()
	p := NewProgrammer(m)
	a := portState("ns/a:80/TCP", key("10.96.0.1", 80, maps.ProtoTCP, maps.ScopeCluster), be("10.244.1.2"), be("10.244.1.3"))
	gone := portState("ns/gone:80/TCP", key("10.96.0.9", 80, maps.ProtoTCP, maps.ScopeCluster), be("10.244.1.7"))
	_ = p.Apply("ns/a", ServiceState{Ports: []PortState{a}})
	_ = p.Apply("ns/gone", ServiceState{Ports: []PortState{gone}})
	idA := m.svcs[key("10.96.0.1", 80, maps.ProtoTCP, maps.ScopeCluster)].ID

	// a restarted agent: adopts, re-applies the same state without writing, drops the deleted service
	q := NewProgrammer(m)
	if err := q.Adopt(); err != nil {
		t.Fatal(err)
	}
	if err := q.Apply("ns/a", ServiceState{Ports: []PortState{a}}); err != nil {
		t.Fatal(err)
	}
	if q.Writes != 0 {
		t.Errorf("adopted state rewritten: %d writes", q.Writes)
	}
	if err := q.FinishAdoption(); err != nil {
		t.Fatal(err)
	}
	checkTable(t, m, a)
	if got := m.svcs[key("10.96.0.1", 80, maps.ProtoTCP, maps.ScopeCluster)].ID; got != idA {
		t.Errorf("backend table id changed %d -> %d", idA, got)
	}
	// a new service does not collide with the adopted id
	c := portState("ns/c:80/TCP", key("10.96.0.3", 80, maps.ProtoTCP, maps.ScopeCluster), be("10.244.1.8"))
	_ = q.Apply("ns/c", ServiceState{Ports: []PortState{c}})
	if m.svcs[key("10.96.0.3", 80, maps.ProtoTCP, maps.ScopeCluster)].ID == idA {
		t.Error("id reused")
	}
	checkTable(t, m, a, c)
}

func TestProgrammerMapFull(t *testing.T) {
	m := newMem()
	m.limit = 1
	p := NewProgrammer(m)
	a := portState("ns/a:80/TCP", key("10.96.0.1", 80, maps.ProtoTCP, maps.ScopeCluster), be("10.244.1.2"))
	b := portState("ns/b:80/TCP", key("10.96.0.2", 80, maps.ProtoTCP, maps.ScopeCluster), be("10.244.1.3"))
	if err := p.Apply("ns/a", ServiceState{Ports: []PortState{a}}); err != nil {
		t.Fatal(err)
	}
	if err := p.Apply("ns/b", ServiceState{Ports: []PortState{b}}); !errors.Is(err, errFull) {
		t.Fatalf("want map full, got %v", err)
	}
	// the agent then removes what was written of b
	if err := p.Apply("ns/b", ServiceState{}); err != nil {
		t.Fatal(err)
	}
	checkTable(t, m, a)
}

// flowTable is a memTable that records conntrack flushes and affinity purges.
type flowTable struct {
	*memTable
	flushed map[uint32][]netip.AddrPort
	purged  []uint32
}

func (f *flowTable) DeleteConntrackForBackends(id uint32, _ uint8, bes []netip.AddrPort) (int, error) {
	f.flushed[id] = append(f.flushed[id], bes...)
	return len(bes), nil
}

func (f *flowTable) PurgeAffinity(id uint32) (int, error) {
	f.purged = append(f.purged, id)
	return 0, nil
}

// TestProgrammerEndsFlowsOfRemovedBackends: UDP flows of removed endpoints (and of a changed
// targetPort) are flushed, TCP flows are not; a deleted Service's UDP flows and affinity entries go.
func TestProgrammerEndsFlowsOfRemovedBackends(t *testing.T) {
	m := &flowTable{memTable: newMem(), flushed: map[uint32][]netip.AddrPort{}}
	p := NewProgrammer(m)
	uk, tk := key("10.96.0.1", 53, maps.ProtoUDP, maps.ScopeCluster), key("10.96.0.1", 53, maps.ProtoTCP, maps.ScopeCluster)
	state := func(bes ...maps.BackendValue) ServiceState {
		return ServiceState{Ports: []PortState{portState("ns/dns:53/UDP", uk, bes...), portState("ns/dns:53/TCP", tk, bes...)}}
	}
	if err := p.Apply("ns/dns", state(be("10.244.1.2"), be("10.244.1.3"))); err != nil {
		t.Fatal(err)
	}
	id := m.svcs[uk].ID
	moved := be("10.244.1.3")
	moved.Port = 9090
	if err := p.Apply("ns/dns", state(moved)); err != nil {
		t.Fatal(err)
	}
	want := []netip.AddrPort{netip.MustParseAddrPort("10.244.1.2:8080"), netip.MustParseAddrPort("10.244.1.3:8080")}
	if len(m.flushed) != 1 || fmt.Sprint(m.flushed[id]) != fmt.Sprint(want) {
		t.Fatalf("flushed %v, want %v for UDP service %d only", m.flushed, want, id)
	}
	if err := p.Apply("ns/dns", ServiceState{}); err != nil {
		t.Fatal(err)
	}
	if got := m.flushed[id][len(m.flushed[id])-1]; got != netip.MustParseAddrPort("10.244.1.3:9090") {
		t.Errorf("delete flushed %v", m.flushed[id])
	}
	if len(m.purged) != 2 {
		t.Errorf("affinity purged for %v, want both ports", m.purged)
	}
}

// TestProgrammerBatchNeverShowsMissingSlots: between Begin and Commit, Services adopted, grown, shrunk,
// deleted and new are written so that at no write does a frontend count a backend slot the table does
// not hold, and the table ends holding exactly the new states.
func TestProgrammerBatchNeverShowsMissingSlots(t *testing.T) {
	m := newMem()
	p := NewProgrammer(m)
	fe := func(i int) maps.ServiceKey {
		return key(fmt.Sprintf("10.96.0.%d", i), 80, maps.ProtoTCP, maps.ScopeCluster)
	}
	bes := func(n int) []maps.BackendValue {
		var out []maps.BackendValue
		for j := range n {
			out = append(out, be(fmt.Sprintf("10.244.1.%d", 10+j)))
		}
		return out
	}
	st := func(i, n int) ServiceState {
		return ServiceState{Ports: []PortState{portState(fmt.Sprintf("ns/s%d:80/TCP", i), fe(i), bes(n)...)}}
	}
	for i := range 6 {
		must(t, p.Apply(fmt.Sprintf("ns/s%d", i), st(i, 3)))
	}
	m.afterWrite = func() {
		for k, v := range m.svcs {
			for tbl, n := range map[uint8]uint16{maps.TableAll: v.Count, maps.TableLocal: v.LocalCount} {
				for s := range n {
					if _, ok := m.bes[maps.BackendKey{ServiceID: v.ID, Slot: s, Table: tbl}]; !ok {
						t.Fatalf("frontend %+v counts %d slots of table %d, slot %d missing", k, n, tbl, s)
					}
				}
			}
		}
	}
	// restart: s0 grows to 5, s1 shrinks to 1, s2 loses its endpoints, s3 is unchanged, s4 and s5 are
	// gone, s6 and s7 are new
	p = NewProgrammer(m)
	must(t, p.Adopt())
	p.Begin()
	want := map[int]int{0: 5, 1: 1, 2: 0, 3: 3, 6: 2, 7: 4}
	var wantPorts []PortState
	for i, n := range want {
		s := st(i, n)
		must(t, p.Apply(fmt.Sprintf("ns/s%d", i), s))
		wantPorts = append(wantPorts, s.Ports...)
	}
	must(t, p.Commit())
	must(t, p.FinishAdoption())
	if err := tableHolds(m, wantPorts); err != nil {
		t.Fatal(err)
	}
	if s, f, b := p.Counts(); s != 6 || f != 6 || b != 15 {
		t.Errorf("counts %d services, %d frontends, %d backends, want 6, 6, 15", s, f, b)
	}
}
