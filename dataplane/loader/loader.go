// Package loader loads kubedirect's BPF programs, creates or adopts their
// pinned maps, and attaches the programs to the node NIC, the vxlan device,
// pod veths and a cgroup.
//
// Restart safety: maps are pinned under Options.PinDir and adopted as they are
// (never flushed) by the next Load; attachments are pinned links under
// PinDir/links, so a restarted agent swaps programs in place (link.Update)
// and traffic is never left unprocessed. Close keeps both; Remove deletes both.
package loader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/kubedirect/kubedirect/bpf"
	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/maps"
)

// DefaultPinDir is where maps and links are pinned.
const DefaultPinDir = "/sys/fs/bpf/kubedirect"

// ErrIncompatibleMap is returned when a pinned map's type, key or value size
// differs from what the programs expect (a layout change between versions).
var ErrIncompatibleMap = errors.New("pinned map is incompatible")

// Options configure Load.
type Options struct {
	// PinDir is the bpffs directory for maps and links. Default DefaultPinDir.
	PinDir string
	// MapSizes are the capacities of newly created maps; zero fields take
	// config.DefaultMapSizes (the max_entries in bpf/ are placeholders).
	// Adopted maps keep the size they were created with.
	MapSizes config.MapSizes
	// ReplaceIncompatible recreates (empty) a pinned map whose layout changed
	// instead of failing with ErrIncompatibleMap, and unpins the maps an older
	// version pinned that this one no longer declares. An agent upgrade needs
	// it: whatever it loses the agent rewrites from the API server, except the
	// flows tracked in a replaced conntrack map.
	ReplaceIncompatible bool
	// ForceClsact attaches tc programs with clsact/cls_bpf even when tcx is
	// available.
	ForceClsact bool
	// Logger receives adoption and attach messages. Default slog.Default().
	Logger *slog.Logger
}

// Programs are the loaded programs, one per attach point: bpf2go's generated structs of each object,
// whose ebpf tags name the programs (FromContainer, FromNetdev, SockConnect4, ...).
type Programs struct {
	bpf.ContainerPrograms
	bpf.NetdevPrograms
	bpf.OverlayPrograms
	bpf.SockPrograms
	bpf.XdpPrograms
}

// object is one BPF object: its collection spec and the programs LoadAndAssign fills from it.
type object struct {
	spec  func() (*ebpf.CollectionSpec, error)
	progs any
}

// objects lists every BPF object the datapath loads, with where its programs go in p: the one place a
// new object (a new bpf2go target) is added.
func (p *Programs) objects() []object {
	return []object{
		{bpf.LoadContainer, &p.ContainerPrograms},
		{bpf.LoadNetdev, &p.NetdevPrograms},
		{bpf.LoadOverlay, &p.OverlayPrograms},
		{bpf.LoadSock, &p.SockPrograms},
		{bpf.LoadXdp, &p.XdpPrograms},
	}
}

// Close closes every loaded program (attachments hold their own references).
func (p *Programs) Close() error {
	return errors.Join(p.ContainerPrograms.Close(), p.NetdevPrograms.Close(), p.OverlayPrograms.Close(),
		p.SockPrograms.Close(), p.XdpPrograms.Close())
}

// Datapath is a loaded kubedirect datapath.
type Datapath struct {
	// Maps are the (pinned) maps, shared by every program.
	Maps *maps.Set
	// Programs are the loaded programs.
	Programs Programs
	// Adopted lists the maps that were already pinned and reused as they were.
	Adopted []string
	// Replaced lists the pinned maps recreated because their layout changed,
	// Unpinned the pinned maps of an older version that no program uses now
	// (both only with Options.ReplaceIncompatible).
	Replaced, Unpinned []string

	opts   Options
	log    *slog.Logger
	clsact map[clsactAttach]bool
}

// clsactAttach identifies a cls_bpf filter this Datapath installed.
type clsactAttach struct {
	ifindex int
	ingress bool
}

func (o *Options) setDefaults() {
	if o.PinDir == "" {
		o.PinDir = DefaultPinDir
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

func specs() ([]*ebpf.CollectionSpec, error) {
	var out []*ebpf.CollectionSpec
	for _, o := range new(Programs).objects() {
		s, err := o.spec()
		if err != nil {
			return nil, fmt.Errorf("load collection spec: %w", err)
		}
		out = append(out, s)
	}
	return out, nil
}

// Specs returns the collection specs of every program object (container,
// netdev, overlay, sock, xdp), for inspection (BTF, map definitions).
func Specs() ([]*ebpf.CollectionSpec, error) { return specs() }

// sizesByName reads the capacities out of s, whose uint32 fields are tagged ebpf:"<map name>", with
// defaults for zero fields. A tag that names no map is an error: a renamed map would silently keep its
// placeholder size.
func sizesByName(s config.MapSizes) (map[string]uint32, error) {
	s.SetDefaults()
	known := map[string]bool{}
	for _, n := range maps.Names {
		known[n] = true
	}
	out := map[string]uint32{}
	v := reflect.ValueOf(s)
	for i := range v.NumField() {
		name := v.Type().Field(i).Tag.Get("ebpf")
		if !known[name] {
			return nil, fmt.Errorf("map size %s: ebpf tag %q names no map", v.Type().Field(i).Name, name)
		}
		if n := uint32(v.Field(i).Uint()); n != 0 {
			out[name] = n
		}
	}
	return out, nil
}

// Load creates or adopts the maps under opts.PinDir and loads every program.
// Nothing is attached yet.
func Load(ctx context.Context, opts Options) (*Datapath, error) {
	opts.setDefaults()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	all, err := specs()
	if err != nil {
		return nil, err
	}
	if err := EnsureBPFFS(opts.PinDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.PinDir, 0o755); err != nil {
		return nil, fmt.Errorf("create pin dir: %w", err)
	}
	sizes, err := sizesByName(opts.MapSizes)
	if err != nil {
		return nil, err
	}
	d := &Datapath{opts: opts, log: opts.Logger}
	byName := map[string]*ebpf.Map{}
	fail := func(err error) (*Datapath, error) {
		for _, m := range byName {
			m.Close()
		}
		d.Programs.Close()
		return nil, err
	}
	for _, name := range maps.Names {
		ms, ok := all[0].Maps[name]
		if !ok {
			return fail(fmt.Errorf("map %s missing from the BPF object", name))
		}
		ms = ms.Copy()
		ms.Pinning = ebpf.PinNone
		if n := sizes[name]; n != 0 {
			ms.MaxEntries = n
		}
		m, how, err := openOrCreate(ms, filepath.Join(opts.PinDir, name), opts.ReplaceIncompatible)
		if err != nil {
			return fail(err)
		}
		switch how {
		case pinAdopted:
			d.Adopted = append(d.Adopted, name)
		case pinReplaced:
			d.Replaced = append(d.Replaced, name)
		}
		byName[name] = m
	}
	if len(d.Adopted) > 0 {
		d.log.Info("adopted pinned BPF maps", "dir", opts.PinDir, "maps", d.Adopted)
	}
	if len(d.Replaced) > 0 {
		d.log.Warn("recreated pinned BPF maps whose layout changed (an upgrade): their entries are gone",
			"dir", opts.PinDir, "maps", d.Replaced)
	}
	if opts.ReplaceIncompatible {
		unpinned, err := unpinUnknownMaps(opts.PinDir)
		if err != nil {
			return fail(err)
		}
		d.Unpinned = unpinned
		if len(unpinned) > 0 {
			d.log.Info("unpinned BPF maps of an older version", "dir", opts.PinDir, "maps", unpinned)
		}
	}
	for i, o := range d.Programs.objects() {
		if err := LoadObject(all[i], byName, o.progs); err != nil {
			return fail(err)
		}
	}
	d.Maps = maps.FromMap(byName)
	return d, nil
}

// LoadObject loads the programs of spec into progs (a bpf2go programs struct) with the maps of byName
// in place of the object's own: each object defines every map, and all must use the same ones, sized
// as those maps are.
func LoadObject(spec *ebpf.CollectionSpec, byName map[string]*ebpf.Map, progs any) error {
	repl := map[string]*ebpf.Map{}
	for name, ms := range spec.Maps {
		m, ok := byName[name]
		if !ok {
			continue
		}
		info, err := m.Info()
		if err != nil {
			return fmt.Errorf("map info %s: %w", name, err)
		}
		ms.MaxEntries = info.MaxEntries
		ms.Flags = info.Flags
		ms.Pinning = ebpf.PinNone
		repl[name] = m
	}
	if err := spec.LoadAndAssign(progs, &ebpf.CollectionOptions{MapReplacements: repl}); err != nil {
		return fmt.Errorf("load BPF programs: %w", err)
	}
	return nil
}

// pinOutcome says what openOrCreate did with a map's pin.
type pinOutcome int

const (
	pinCreated  pinOutcome = iota // nothing was pinned: a new map
	pinAdopted                    // the pinned map is reused as it is
	pinReplaced                   // the pinned map had another layout: a new, empty one replaces it
)

// openOrCreate adopts the map pinned at path, or creates and pins a new one.
func openOrCreate(ms *ebpf.MapSpec, path string, replace bool) (*ebpf.Map, pinOutcome, error) {
	how := pinCreated
	m, err := ebpf.LoadPinnedMap(path, nil)
	switch {
	case err == nil:
		info, ierr := m.Info()
		if ierr == nil && info.Type == ms.Type && info.KeySize == ms.KeySize && info.ValueSize == ms.ValueSize {
			return m, pinAdopted, nil
		}
		m.Close()
		if !replace {
			return nil, how, fmt.Errorf("adopt %s: %w", path, ErrIncompatibleMap)
		}
		if err := os.Remove(path); err != nil {
			return nil, how, fmt.Errorf("remove incompatible map %s: %w", path, err)
		}
		how = pinReplaced
	case !errors.Is(err, os.ErrNotExist):
		return nil, how, fmt.Errorf("open pinned map %s: %w", path, err)
	}
	m, err = ebpf.NewMap(ms)
	if err != nil {
		return nil, how, fmt.Errorf("create map %s: %w", ms.Name, err)
	}
	if err := m.Pin(path); err != nil {
		m.Close()
		return nil, how, fmt.Errorf("pin map %s: %w", path, err)
	}
	return m, how, nil
}

// unpinUnknownMaps removes the maps pinned directly under dir (links live in
// dir/links) whose names no program declares any more: a map an older version
// renamed or dropped would otherwise stay in the kernel for good.
func unpinUnknownMaps(dir string) ([]string, error) {
	known := map[string]bool{}
	for _, n := range maps.Names {
		known[n] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list pinned maps: %w", err)
	}
	var removed []string
	for _, e := range entries {
		if e.IsDir() || known[e.Name()] || !strings.HasPrefix(e.Name(), maps.NamePrefix) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return removed, fmt.Errorf("unpin stale map %s: %w", e.Name(), err)
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// PinDir returns the directory maps and links are pinned under.
func (d *Datapath) PinDir() string { return d.opts.PinDir }

// Close releases file descriptors. Pinned maps and pinned attachments stay,
// so the datapath keeps working until the next Load takes over.
func (d *Datapath) Close() error {
	var errs []error
	errs = append(errs, d.Programs.Close())
	d.Programs = Programs{}
	if d.Maps != nil {
		errs = append(errs, d.Maps.Close())
	}
	return errors.Join(errs...)
}

// Remove detaches everything: every pinned link under PinDir/links (tcx and
// cgroup attachments, including those of earlier processes) and the clsact
// filters this Datapath installed; then it unpins the maps, removes PinDir
// and closes d. Clsact filters of an earlier process are removed with the
// Detach* calls (or go away with their device).
func (d *Datapath) Remove() error {
	var errs []error
	errs = append(errs, d.detachAll())
	if d.Maps != nil {
		errs = append(errs, d.Maps.Unpin())
	}
	errs = append(errs, d.Close())
	if err := os.RemoveAll(d.opts.PinDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
