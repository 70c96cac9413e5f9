package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"github.com/kubedirect/kubedirect/internal/privfs"
)

// Endpoint is one allocated pod address and the interfaces that carry it. It is the content of the
// IPAM file named after the address; the agent reads these files to program the endpoints map.
type Endpoint struct {
	// IP is the pod's address (a /32 on the pod side).
	IP netip.Addr `json:"ip"`
	// ContainerID and IfName identify the CNI attachment.
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	// Netns is the pod's network namespace path.
	Netns string `json:"netns,omitempty"`
	// HostVeth is the host side of the pod's veth pair and HostIfindex its index in the node namespace.
	HostVeth    string `json:"hostVeth,omitempty"`
	HostIfindex int    `json:"hostIfindex,omitempty"`
	// HostMAC is the host veth's MAC (the pod's gateway) and PodMAC the pod interface's MAC.
	HostMAC string `json:"hostMAC,omitempty"`
	PodMAC  string `json:"podMAC,omitempty"`
	// Namespace and Pod come from the runtime's CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME) when present.
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
}

// Store is a crash-safe IPAM: one file per allocated address in a directory, created with O_EXCL, so
// two concurrent allocations can never hand out the same address and a crash never loses one.
type Store struct {
	// Dir holds one file per allocated address, named after it.
	Dir string
}

// ErrExhausted is returned when the pod CIDR has no free address left.
var ErrExhausted = errors.New("no free address in pod CIDR")

// Lookup returns the endpoint allocated to containerID/ifName, or nil.
func (s Store) Lookup(containerID, ifName string) (*Endpoint, error) {
	eps, err := s.List()
	if err != nil {
		return nil, err
	}
	for i := range eps {
		if eps[i].ContainerID == containerID && eps[i].IfName == ifName {
			return &eps[i], nil
		}
	}
	return nil, nil
}

// List returns every allocated endpoint whose file is readable, sorted by address.
func (s Store) List() ([]Endpoint, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list ipam dir: %w", err)
	}
	var out []Endpoint
	for _, e := range entries {
		if _, err := netip.ParseAddr(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			continue
		}
		var ep Endpoint
		if json.Unmarshal(data, &ep) != nil || !ep.IP.IsValid() {
			continue // being written, or torn by a crash: still reserved, never handed out
		}
		out = append(out, ep)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out, nil
}

// Allocate reserves the first free address of cidr (skipping the network address, the first host
// address and the broadcast address) for ep and writes ep with that address. If containerID/ifName
// already holds an address, that endpoint is returned unchanged.
func (s Store) Allocate(cidr netip.Prefix, ep Endpoint) (Endpoint, error) {
	if old, err := s.Lookup(ep.ContainerID, ep.IfName); err != nil {
		return ep, err
	} else if old != nil {
		return *old, nil
	}
	if err := privfs.MkdirAll(s.Dir); err != nil {
		return ep, fmt.Errorf("create ipam dir: %w", err)
	}
	cidr = cidr.Masked()
	first := cidr.Addr().Next().Next() // .0 network, .1 kept for the node
	for a := first; cidr.Contains(a); a = a.Next() {
		if !cidr.Contains(a.Next()) {
			break // broadcast
		}
		f, err := os.OpenFile(filepath.Join(s.Dir, a.String()), os.O_WRONLY|os.O_CREATE|os.O_EXCL, privfs.FileMode)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return ep, fmt.Errorf("reserve %s: %w", a, err)
		}
		ep.IP = a
		werr := writeEndpoint(f, ep)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			_ = os.Remove(f.Name())
			return ep, fmt.Errorf("write reservation %s: %w", a, werr)
		}
		return ep, nil
	}
	return ep, fmt.Errorf("allocate from %s: %w", cidr, ErrExhausted)
}

func writeEndpoint(f *os.File, ep Endpoint) error {
	data, err := json.Marshal(ep)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// Update rewrites the file of an allocated endpoint (after the interfaces exist) atomically.
func (s Store) Update(ep Endpoint) error {
	data, err := json.Marshal(ep)
	if err != nil {
		return fmt.Errorf("encode endpoint: %w", err)
	}
	path := filepath.Join(s.Dir, ep.IP.String())
	tmp := filepath.Join(s.Dir, "."+ep.IP.String()+".tmp")
	if err := os.WriteFile(tmp, data, privfs.FileMode); err != nil {
		return fmt.Errorf("write endpoint: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace endpoint: %w", err)
	}
	return nil
}

// Release frees every address held by containerID/ifName. Releasing nothing is not an error.
func (s Store) Release(containerID, ifName string) ([]Endpoint, error) {
	eps, err := s.List()
	if err != nil {
		return nil, err
	}
	var released []Endpoint
	for _, ep := range eps {
		if ep.ContainerID != containerID || ep.IfName != ifName {
			continue
		}
		if err := os.Remove(filepath.Join(s.Dir, ep.IP.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return released, fmt.Errorf("release %s: %w", ep.IP, err)
		}
		released = append(released, ep)
	}
	return released, nil
}
