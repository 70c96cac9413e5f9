// Package loadertest has helpers for tests that load the datapath.
package loadertest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kubedirect/kubedirect/dataplane/loader"
)

// PinDir returns a fresh pin directory removed when the test ends:
// /sys/fs/bpf/kubedirect-test-<random> when /sys/fs/bpf is a bpffs, otherwise
// a private bpffs mounted on a temporary directory (so tests never change the
// host's /sys/fs/bpf). Needs root.
func PinDir(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	if loader.IsBPFFS("/sys/fs/bpf") {
		dir := "/sys/fs/bpf/kubedirect-test-" + suffix
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	mnt, err := os.MkdirTemp("", "kubedirect-bpffs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("bpf", mnt, "bpf", 0, "mode=0700"); err != nil {
		os.Remove(mnt)
		t.Fatalf("mount private bpffs: %v", err)
	}
	t.Cleanup(func() {
		_ = unix.Unmount(mnt, unix.MNT_DETACH)
		os.Remove(mnt)
	})
	return mnt + "/kubedirect-test-" + suffix
}
