package loader

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// bpffsRoot is the conventional bpffs mount point.
const bpffsRoot = "/sys/fs/bpf"

// IsBPFFS reports whether path (or its nearest existing parent) lives on a bpffs.
func IsBPFFS(path string) bool {
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil {
			return st.Type == unix.BPF_FS_MAGIC
		}
		if p == "/" || p == "." {
			return false
		}
	}
}

// EnsureBPFFS mounts a bpffs at /sys/fs/bpf when dir is below it and none is
// mounted yet (nodes normally have one; minimal ones do not). Other locations
// must already be on a bpffs.
func EnsureBPFFS(dir string) error {
	if IsBPFFS(dir) {
		return nil
	}
	clean := filepath.Clean(dir)
	if clean != bpffsRoot && !strings.HasPrefix(clean, bpffsRoot+"/") {
		return fmt.Errorf("pin dir %s is not on a bpffs", dir)
	}
	if err := os.MkdirAll(bpffsRoot, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", bpffsRoot, err)
	}
	if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", bpffsRoot, err)
	}
	return nil
}
