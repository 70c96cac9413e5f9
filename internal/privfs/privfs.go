// Package privfs makes the node state kubedirect keeps on disk (BPF pins, CNI state) private to root.
package privfs

import (
	"fmt"
	"os"
)

// DirMode is the mode of every directory of node state: only root enters it.
const DirMode os.FileMode = 0o700

// FileMode is the mode of every file of node state: only root reads or writes it.
const FileMode os.FileMode = 0o600

// MkdirAll creates dir (and missing parents) with DirMode and sets DirMode on dir when it already
// existed: a directory made by an older release or by kubelet (a hostPath DirectoryOrCreate is 0755)
// keeps its mode through os.MkdirAll.
func MkdirAll(dir string) error {
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, DirMode); err != nil {
		return fmt.Errorf("restrict %s: %w", dir, err)
	}
	return nil
}
