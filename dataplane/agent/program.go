package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// Table is the part of the BPF maps (*maps.Set) that Service programming reads and writes.
type Table interface {
	UpdateService(maps.ServiceKey, maps.ServiceValue) error
	DeleteService(maps.ServiceKey) error
	UpdateBackend(maps.BackendKey, maps.BackendValue) error
	DeleteBackend(maps.BackendKey) error
	IterateServices(func(maps.ServiceKey, maps.ServiceValue) bool) error
	IterateBackends(func(maps.BackendKey, maps.BackendValue) bool) error
}

// BatchTable is implemented by tables that write many entries in one call (*maps.Set: one syscall per
// map); Commit uses it.
type BatchTable interface {
	UpdateServices([]maps.ServiceKey, []maps.ServiceValue) error
	UpdateBackends([]maps.BackendKey, []maps.BackendValue) error
}

// batch holds the writes of the Applies since Begin: the last write of each entry (nil: delete) and
// what must follow the deletes.
type batch struct {
	svcs  map[maps.ServiceKey]*maps.ServiceValue
	bes   map[maps.BackendKey]*maps.BackendValue
	after []func() error
	// freed are the ids of ports cleared in the batch: reused only after Commit, or a new port could
	// write slots that a pending delete of the old one then removes.
	freed []uint32
}

// programmed is what the maps hold for one Service port.
type programmed struct {
	id         uint32
	frontends  map[maps.ServiceKey]maps.ServiceValue
	all, local []maps.BackendValue
}

// Programmer writes Service states into the maps incrementally: it remembers what each Service port
// holds and writes only the entries that differ, so a change to one Service touches only its entries.
// It is not safe for concurrent use.
type Programmer struct {
	t         Table
	ports     map[string]*programmed // by PortState.Name
	byService map[string][]string    // service key -> port names
	used      map[uint32]bool
	next      uint32
	orphans   map[uint32]*programmed // adopted from pinned maps, not yet claimed
	orphanFE  map[maps.ServiceKey]uint32
	// frontends and backends are the totals Counts reports, kept up to date by Apply (the agent reads
	// them after every Service sync: summing over all ports there made a full sync quadratic).
	frontends, backends int
	// batch, between Begin and Commit, holds the writes instead of the table.
	batch *batch
	// Writes counts map updates and deletes (for tests and metrics).
	Writes int
}

// NewProgrammer returns a programmer over t that assumes t is empty; call Adopt to take over entries
// already in t.
func NewProgrammer(t Table) *Programmer {
	return &Programmer{t: t, ports: map[string]*programmed{}, byService: map[string][]string{},
		used: map[uint32]bool{}, next: 1, orphans: map[uint32]*programmed{}, orphanFE: map[maps.ServiceKey]uint32{}}
}

// Adopt reads the services and backends already in the maps (pinned by a previous agent). Until
// FinishAdoption, Apply reuses an adopted backend table for a port that has one of its frontends, so
// entries that are still right are never rewritten and established flows keep their backends.
func (p *Programmer) Adopt() error {
	err := p.t.IterateServices(func(k maps.ServiceKey, v maps.ServiceValue) bool {
		o := p.orphan(v.ID)
		o.frontends[k] = v
		p.orphanFE[k] = v.ID
		return true
	})
	if err != nil {
		return fmt.Errorf("read services map: %w", err)
	}
	err = p.t.IterateBackends(func(k maps.BackendKey, v maps.BackendValue) bool {
		o := p.orphan(k.ServiceID)
		tbl := &o.all
		if k.Table == maps.TableLocal {
			tbl = &o.local
		}
		for len(*tbl) <= int(k.Slot) {
			*tbl = append(*tbl, maps.BackendValue{})
		}
		(*tbl)[k.Slot] = v
		return true
	})
	if err != nil {
		return fmt.Errorf("read backends map: %w", err)
	}
	return nil
}

func (p *Programmer) orphan(id uint32) *programmed {
	o := p.orphans[id]
	if o == nil {
		o = &programmed{id: id, frontends: map[maps.ServiceKey]maps.ServiceValue{}}
		p.orphans[id] = o
		p.used[id] = true
	}
	return o
}

// FinishAdoption deletes the adopted entries that no Service claimed (Services deleted while no agent ran).
func (p *Programmer) FinishAdoption() error {
	var errs []error
	for id, o := range p.orphans {
		errs = append(errs, p.clear(o))
		delete(p.orphans, id)
		p.release(id)
	}
	p.orphanFE = map[maps.ServiceKey]uint32{}
	return errors.Join(errs...)
}

// Begin makes the following Applies record their writes instead of making them, until Commit writes
// them all at once. Apply then reports no map error: Commit does.
func (p *Programmer) Begin() {
	p.batch = &batch{svcs: map[maps.ServiceKey]*maps.ServiceValue{}, bes: map[maps.BackendKey]*maps.BackendValue{}}
}

// Commit writes what the Applies since Begin recorded, in the order that keeps every Service whole for
// packets in flight, as Apply's own order does for one Service: all new and changed backend slots, then
// the frontends (whose counts make the new slots visible), then the deleted frontends, then the slots
// beyond the new counts, then the flows of removed backends and ports. Entries are written only in their
// final state. On error the table may hold part of the batch while the Programmer believes it all
// written: start over with a new Programmer that adopts the table.
func (p *Programmer) Commit() error {
	b := p.batch
	if b == nil {
		return nil
	}
	p.batch = nil
	defer func() {
		for _, id := range b.freed {
			delete(p.used, id)
		}
	}()
	var (
		beKeys  []maps.BackendKey
		beVals  []maps.BackendValue
		svcKeys []maps.ServiceKey
		svcVals []maps.ServiceValue
	)
	for k, v := range b.bes {
		if v != nil {
			beKeys, beVals = append(beKeys, k), append(beVals, *v)
		}
	}
	for k, v := range b.svcs {
		if v != nil {
			svcKeys, svcVals = append(svcKeys, k), append(svcVals, *v)
		}
	}
	bt, ok := p.t.(BatchTable)
	if !ok {
		bt = oneByOne{p.t}
	}
	if err := bt.UpdateBackends(beKeys, beVals); err != nil {
		return err
	}
	if err := bt.UpdateServices(svcKeys, svcVals); err != nil {
		return err
	}
	for k, v := range b.svcs {
		if v == nil {
			if err := p.t.DeleteService(k); err != nil {
				return err
			}
		}
	}
	for k, v := range b.bes {
		if v == nil {
			if err := p.t.DeleteBackend(k); err != nil {
				return err
			}
		}
	}
	var errs []error
	for _, f := range b.after {
		errs = append(errs, f())
	}
	return errors.Join(errs...)
}

// oneByOne is the BatchTable of a Table without batch writes.
type oneByOne struct{ t Table }

func (o oneByOne) UpdateServices(keys []maps.ServiceKey, vals []maps.ServiceValue) error {
	for i := range keys {
		if err := o.t.UpdateService(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return nil
}

func (o oneByOne) UpdateBackends(keys []maps.BackendKey, vals []maps.BackendValue) error {
	for i := range keys {
		if err := o.t.UpdateBackend(keys[i], vals[i]); err != nil {
			return err
		}
	}
	return nil
}

// The writes of Apply: to the table, or into the batch between Begin and Commit.

// writeService sets the frontend k to *v, or deletes it when v is nil.
func (p *Programmer) writeService(k maps.ServiceKey, v *maps.ServiceValue) error {
	return write(p, k, v, func(b *batch) map[maps.ServiceKey]*maps.ServiceValue { return b.svcs }, p.t.UpdateService, p.t.DeleteService)
}

// writeBackend sets the backend slot k to *v, or deletes it when v is nil.
func (p *Programmer) writeBackend(k maps.BackendKey, v *maps.BackendValue) error {
	return write(p, k, v, func(b *batch) map[maps.BackendKey]*maps.BackendValue { return b.bes }, p.t.UpdateBackend, p.t.DeleteBackend)
}

// write counts one write of Apply and, between Begin and Commit, keeps it as the entry's last write in
// the batch's table of pending ones; otherwise it updates the entry to *v now, or deletes it (v nil).
func write[K comparable, V any](p *Programmer, k K, v *V, pending func(*batch) map[K]*V, update func(K, V) error, del func(K) error) error {
	p.Writes++
	switch {
	case p.batch != nil:
		pending(p.batch)[k] = v
		return nil
	case v == nil:
		return del(k)
	default:
		return update(k, *v)
	}
}

// afterDeletes runs f once the deletes are made: now, or at Commit.
func (p *Programmer) afterDeletes(f func() error) error {
	if p.batch != nil {
		p.batch.after = append(p.batch.after, f)
		return nil
	}
	return f()
}

// release frees id for another port: now, or after Commit.
func (p *Programmer) release(id uint32) {
	if p.batch != nil {
		p.batch.freed = append(p.batch.freed, id)
		return
	}
	delete(p.used, id)
}

func (p *Programmer) allocID() uint32 {
	for p.used[p.next] || p.next == 0 {
		p.next++
	}
	id := p.next
	p.used[id] = true
	p.next++
	return id
}

// Apply makes the maps hold st for the Service key (namespace/name), writing only what changed. An empty
// state removes the Service.
func (p *Programmer) Apply(key string, st ServiceState) error {
	touched := append([]string(nil), p.byService[key]...)
	for i := range st.Ports {
		touched = append(touched, st.Ports[i].Name)
	}
	f0, b0 := p.portCounts(touched)
	defer func() {
		f1, b1 := p.portCounts(touched)
		p.frontends += f1 - f0
		p.backends += b1 - b0
	}()
	var errs []error
	names := make([]string, 0, len(st.Ports))
	want := map[string]bool{}
	for i := range st.Ports {
		d := &st.Ports[i]
		names = append(names, d.Name)
		want[d.Name] = true
		cur := p.ports[d.Name]
		if cur == nil {
			cur = p.claim(d)
			p.ports[d.Name] = cur
		}
		if err := p.sync(cur, d); err != nil {
			errs = append(errs, fmt.Errorf("program %s: %w", d.Name, err))
		}
	}
	for _, n := range p.byService[key] {
		if !want[n] {
			if cur := p.ports[n]; cur != nil {
				errs = append(errs, p.clear(cur))
				p.release(cur.id)
				delete(p.ports, n)
			}
		}
	}
	if len(names) == 0 {
		delete(p.byService, key)
	} else {
		p.byService[key] = names
	}
	return errors.Join(errs...)
}

// claim returns the adopted table that serves one of d's frontends, or a new empty one.
func (p *Programmer) claim(d *PortState) *programmed {
	keys := make([]maps.ServiceKey, 0, len(d.Frontends))
	for k := range d.Frontends {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	for _, k := range keys {
		id, ok := p.orphanFE[k]
		if !ok {
			continue
		}
		if o := p.orphans[id]; o != nil {
			delete(p.orphans, id)
			for fk := range o.frontends {
				delete(p.orphanFE, fk)
			}
			return o
		}
	}
	return &programmed{id: p.allocID(), frontends: map[maps.ServiceKey]maps.ServiceValue{}}
}

// sync writes the difference between cur and d: new backend slots first, then frontends (whose counts
// make the new slots visible), then deletes frontends and the slots beyond the new counts.
func (p *Programmer) sync(cur *programmed, d *PortState) error {
	gone := removedBackends(cur, d)
	if err := p.syncTable(cur.id, maps.TableAll, &cur.all, d.All); err != nil {
		return err
	}
	if err := p.syncTable(cur.id, maps.TableLocal, &cur.local, d.Local); err != nil {
		return err
	}
	for k, flags := range d.Frontends {
		v := maps.ServiceValue{ID: cur.id, Count: uint16(len(d.All)), LocalCount: uint16(len(d.Local)),
			Flags: flags, AffinityTimeout: d.AffinityTimeout}
		if old, ok := cur.frontends[k]; ok && old == v {
			continue
		}
		if err := p.writeService(k, &v); err != nil {
			return err
		}
		cur.frontends[k] = v
	}
	for k := range cur.frontends {
		if _, ok := d.Frontends[k]; ok {
			continue
		}
		if err := p.writeService(k, nil); err != nil {
			return err
		}
		delete(cur.frontends, k)
	}
	if err := p.trimTable(cur.id, maps.TableAll, &cur.all, len(d.All)); err != nil {
		return err
	}
	if err := p.trimTable(cur.id, maps.TableLocal, &cur.local, len(d.Local)); err != nil {
		return err
	}
	// Only now, with no slot left that names them, can no new flow pick
	// the removed backends again.
	id, proto := cur.id, portProto(d.Frontends)
	return p.afterDeletes(func() error { return p.flush(id, proto, gone) })
}

// AffinityPurger is implemented by tables that hold ClientIP affinity entries (*maps.Set).
type AffinityPurger interface {
	PurgeAffinity(serviceID uint32) (int, error)
}

// ConntrackFlusher is implemented by tables that hold conntrack entries (*maps.Set).
type ConntrackFlusher interface {
	DeleteConntrackForBackends(serviceID uint32, proto uint8, backends []netip.AddrPort) (int, error)
}

// flush ends the UDP flows of service id to the backends that went away, so
// a client that keeps its source port picks a current backend with its next
// datagram (kube-proxy clears UDP conntrack entries of removed endpoints the
// same way). TCP flows are left alone: a terminating endpoint finishes its
// connections, and a dead one resets them.
func (p *Programmer) flush(id uint32, proto uint8, gone []netip.AddrPort) error {
	f, ok := p.t.(ConntrackFlusher)
	if !ok || proto != maps.ProtoUDP || len(gone) == 0 {
		return nil
	}
	if _, err := f.DeleteConntrackForBackends(id, proto, gone); err != nil {
		return fmt.Errorf("flush conntrack: %w", err)
	}
	return nil
}

// portProto returns the protocol of a port's frontends (they all share it).
func portProto[V any](fe map[maps.ServiceKey]V) uint8 {
	for k := range fe {
		return k.Proto
	}
	return 0
}

// removedBackends lists the backend addresses and ports (either table) of cur that d no longer has;
// a changed targetPort counts as a removed backend.
func removedBackends(cur *programmed, d *PortState) []netip.AddrPort {
	have := map[netip.AddrPort]bool{}
	for _, tb := range [][]maps.BackendValue{d.All, d.Local} {
		for _, b := range tb {
			have[backendAddr(b)] = true
		}
	}
	var gone []netip.AddrPort
	for _, tb := range [][]maps.BackendValue{cur.all, cur.local} {
		for _, b := range tb {
			if a := backendAddr(b); !have[a] {
				have[a] = true
				gone = append(gone, a)
			}
		}
	}
	return gone
}

func backendAddr(b maps.BackendValue) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(b.Addr), b.Port)
}

// syncTable writes the slots of want that differ from *cur (growing *cur as it goes).
func (p *Programmer) syncTable(id uint32, table uint8, cur *[]maps.BackendValue, want []maps.BackendValue) error {
	for i, b := range want {
		if i < len(*cur) && (*cur)[i] == b {
			continue
		}
		if err := p.writeBackend(maps.BackendKey{ServiceID: id, Slot: uint16(i), Table: table}, &b); err != nil {
			return err
		}
		if i < len(*cur) {
			(*cur)[i] = b
		} else {
			*cur = append(*cur, b)
		}
	}
	return nil
}

// trimTable deletes the slots at and beyond n, which the frontends' counts no longer reach.
func (p *Programmer) trimTable(id uint32, table uint8, cur *[]maps.BackendValue, n int) error {
	for i := len(*cur) - 1; i >= n; i-- {
		if err := p.writeBackend(maps.BackendKey{ServiceID: id, Slot: uint16(i), Table: table}, nil); err != nil {
			return err
		}
		*cur = (*cur)[:i]
	}
	return nil
}

// clear deletes every entry of a port: frontends first, then backend slots, then the state of its
// flows: UDP conntrack entries (as kube-proxy clears those of a deleted Service) and ClientIP affinity
// entries (a later Service may get the same id).
func (p *Programmer) clear(cur *programmed) error {
	proto := portProto(cur.frontends)
	gone := removedBackends(cur, &PortState{})
	for k := range cur.frontends {
		if err := p.writeService(k, nil); err != nil {
			return err
		}
		delete(cur.frontends, k)
	}
	for _, tb := range []struct {
		t uint8
		l *[]maps.BackendValue
	}{{maps.TableAll, &cur.all}, {maps.TableLocal, &cur.local}} {
		for i := len(*tb.l) - 1; i >= 0; i-- {
			if err := p.writeBackend(maps.BackendKey{ServiceID: cur.id, Slot: uint16(i), Table: tb.t}, nil); err != nil {
				return err
			}
			*tb.l = (*tb.l)[:i]
		}
	}
	id := cur.id
	return p.afterDeletes(func() error {
		if err := p.flush(id, proto, gone); err != nil {
			return err
		}
		if purger, ok := p.t.(AffinityPurger); ok {
			if _, err := purger.PurgeAffinity(id); err != nil {
				return fmt.Errorf("purge affinity: %w", err)
			}
		}
		return nil
	})
}

// Counts are the programmed Services, frontends and backend slots (TableAll).
func (p *Programmer) Counts() (services, frontends, backends int) {
	return len(p.byService), p.frontends, p.backends
}

// portCounts sums the frontends and TableAll slots of the distinct programmed ports among names.
func (p *Programmer) portCounts(names []string) (frontends, backends int) {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if c := p.ports[n]; c != nil && !seen[n] {
			seen[n] = true
			frontends += len(c.frontends)
			backends += len(c.all)
		}
	}
	return frontends, backends
}
