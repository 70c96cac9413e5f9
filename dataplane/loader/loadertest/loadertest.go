// Package loadertest has helpers for tests that load the datapath.
package loadertest

import (
	"context"
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

// Load loads the datapath with opts and its maps pinned in a fresh PinDir (opts.PinDir is replaced),
// and removes it all when the test ends. Needs root: callers skip without it first.
func Load(t testing.TB, opts loader.Options) *loader.Datapath {
	t.Helper()
	opts.PinDir = PinDir(t)
	d, err := loader.Load(context.Background(), opts)
	if err != nil {
		t.Fatalf("load datapath: %v", err)
	}
	t.Cleanup(func() { _ = d.Remove() })
	return d
}
