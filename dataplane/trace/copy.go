package trace

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// fresh are the maps a trace starts empty: its own counters, events and fragment records, so whatever
// they hold afterwards is the traced packet's.
var fresh = map[string]bool{"kd_metrics": true, "kd_events": true, "kd_frags": true}

// traceEventsSize is the trace's ring buffer: a packet produces a few events.
const traceEventsSize = 64 << 10

// copyMaps returns unpinned copies of live's maps with the same layout and entries (services,
// backends, tunnels, endpoints, node addresses, config, conntrack, affinity, socket maps), the maps of
// fresh empty. The programs of a trace write only into these.
func copyMaps(live *maps.Set) (*maps.Set, error) {
	out := map[string]*ebpf.Map{}
	closeAll := func() {
		for _, m := range out {
			m.Close()
		}
	}
	for name, m := range live.ByName() {
		if m == nil {
			closeAll()
			return nil, fmt.Errorf("copy map %s: not open", name)
		}
		c, err := copyMap(name, m)
		if err != nil {
			closeAll()
			return nil, err
		}
		out[name] = c
	}
	return maps.FromMap(out), nil
}

// copyMap creates an unpinned map like m and, unless name is in fresh, copies m's entries into it. An
// LRU copy is sized to its entries (plus room for what the trace adds): an LRU map is preallocated, and
// a full-size conntrack copy would cost the node tens of megabytes for one packet.
func copyMap(name string, m *ebpf.Map) (*ebpf.Map, error) {
	info, err := m.Info()
	if err != nil {
		return nil, fmt.Errorf("copy map %s: %w", name, err)
	}
	spec := &ebpf.MapSpec{Name: "kd_trace", Type: info.Type, KeySize: info.KeySize, ValueSize: info.ValueSize,
		MaxEntries: info.MaxEntries, Flags: info.Flags}
	var keys, values [][]byte
	if !fresh[name] {
		keys, values, err = entries(m, info)
		if err != nil {
			return nil, fmt.Errorf("copy map %s: %w", name, err)
		}
	}
	switch info.Type {
	case ebpf.LRUHash, ebpf.LRUCPUHash:
		spec.MaxEntries = min(info.MaxEntries, uint32(len(keys))+1024)
	case ebpf.RingBuf:
		spec.MaxEntries = traceEventsSize
	}
	c, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("copy map %s: create: %w", name, err)
	}
	for i := range keys {
		if err := c.Put(keys[i], values[i]); err != nil {
			c.Close()
			return nil, fmt.Errorf("copy map %s: %w", name, err)
		}
	}
	return c, nil
}

// entries reads every entry of m as raw bytes. Entries that go away while it reads are skipped.
func entries(m *ebpf.Map, info *ebpf.MapInfo) (keys, values [][]byte, err error) {
	if info.Type == ebpf.RingBuf || info.Type == ebpf.PerCPUArray || info.Type == ebpf.PerCPUHash {
		return nil, nil, errors.New("cannot copy a ring buffer or per-CPU map")
	}
	k, v := make([]byte, info.KeySize), make([]byte, info.ValueSize)
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, append([]byte(nil), k...))
		values = append(values, append([]byte(nil), v...))
	}
	return keys, values, it.Err()
}
