package maps

import (
	"errors"
	"fmt"
)

// SetService programs one service port in the safe order for a running
// datapath: it writes the backend slots of id (TableAll: every backend in
// order; TableLocal: those with BackendLocal), then every frontend in keys
// with v's Count and LocalCount set from bes, then deletes the slots the
// previous version had beyond the new counts. Packets never see a count
// larger than the slots present. All frontends of one Service port
// (ClusterIP, NodePort, externalIPs, LoadBalancer IPs) may share id; their
// values differ only in Flags. prev is the previous backend list length
// (all, local) as returned by the last call, or 0, 0.
func (s *Set) SetService(id uint32, keys []ServiceKey, flags []uint32, v ServiceValue, bes []BackendValue, prevAll, prevLocal uint16) (all, local uint16, err error) {
	if len(flags) != 0 && len(flags) != len(keys) {
		return 0, 0, errors.New("set service: flags must be empty or one per key")
	}
	if len(bes) > 0xffff {
		return 0, 0, errors.New("set service: too many backends")
	}
	for _, b := range bes {
		if err := s.UpdateBackend(BackendKey{ServiceID: id, Slot: all, Table: TableAll}, b); err != nil {
			return 0, 0, err
		}
		all++
		if b.Flags&BackendLocal != 0 {
			if err := s.UpdateBackend(BackendKey{ServiceID: id, Slot: local, Table: TableLocal}, b); err != nil {
				return 0, 0, err
			}
			local++
		}
	}
	v.ID, v.Count, v.LocalCount = id, all, local
	for i, k := range keys {
		kv := v
		if len(flags) != 0 {
			kv.Flags = flags[i]
		}
		if err := s.UpdateService(k, kv); err != nil {
			return 0, 0, err
		}
	}
	return all, local, s.pruneSlots(id, all, prevAll, local, prevLocal)
}

// DeleteServiceFrontends removes the frontends keys, then the backend slots of id
// (prevAll/prevLocal as returned by SetService).
func (s *Set) DeleteServiceFrontends(id uint32, keys []ServiceKey, prevAll, prevLocal uint16) error {
	var errs []error
	for _, k := range keys {
		errs = append(errs, s.DeleteService(k))
	}
	errs = append(errs, s.pruneSlots(id, 0, prevAll, 0, prevLocal))
	return errors.Join(errs...)
}

func (s *Set) pruneSlots(id uint32, all, prevAll, local, prevLocal uint16) error {
	for i := all; i < prevAll; i++ {
		if err := s.DeleteBackend(BackendKey{ServiceID: id, Slot: i, Table: TableAll}); err != nil {
			return fmt.Errorf("prune backends: %w", err)
		}
	}
	for i := local; i < prevLocal; i++ {
		if err := s.DeleteBackend(BackendKey{ServiceID: id, Slot: i, Table: TableLocal}); err != nil {
			return fmt.Errorf("prune backends: %w", err)
		}
	}
	return nil
}
