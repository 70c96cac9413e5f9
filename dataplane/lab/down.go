package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Down removes everything the lab recorded: processes (by pid, checked to be the lab's), pod and node
// namespaces (which takes their veths, vxlan devices and attached programs with them), the underlay
// namespace and its bridge, the host veth, the bpffs mount with every pinned map, the node cgroups and
// the state directory. It goes on after errors and returns them all.
func (l *Lab) Down(ctx context.Context) error {
	s := &l.State
	var errs []error
	// agents and echoes first, the control plane last
	for key, pid := range s.Pids {
		if key != "apiserver" && key != "etcd" {
			stopPid(pid, s.Name, 3*time.Second)
		}
	}
	stopPid(s.Pids["apiserver"], s.Name, 5*time.Second)
	stopPid(s.Pids["etcd"], s.Name, 5*time.Second)
	if s.HostVeth != "" {
		if err := exec.CommandContext(ctx, "ip", "link", "show", s.HostVeth).Run(); err == nil {
			if err := ip(ctx, "link", "del", s.HostVeth); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for i := len(s.Namespaces) - 1; i >= 0; i-- {
		name := s.Namespaces[i]
		if _, err := os.Stat(nsPath(name)); err != nil {
			continue
		}
		if err := ip(ctx, "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	if s.BPFFS != "" {
		if err := unix.Unmount(s.BPFFS, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", s.BPFFS, err))
		}
	}
	for _, cg := range s.Cgroups {
		if err := removeCgroup(cg); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Dir != "" && strings.HasPrefix(filepath.Clean(s.Dir), "/") && filepath.Clean(s.Dir) != "/" {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroup moves any process left in cg to its parent and removes it.
func removeCgroup(cg string) error {
	if _, err := os.Stat(cg); err != nil {
		return nil
	}
	if data, err := os.ReadFile(filepath.Join(cg, "cgroup.procs")); err == nil {
		for _, pid := range strings.Fields(string(data)) {
			_ = os.WriteFile(filepath.Join(filepath.Dir(cg), "cgroup.procs"), []byte(pid), 0o644)
		}
	}
	// the kernel lets a cgroup go only when its last process has left it, a moment after the move
	var err error
	_ = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, time.Second, true, func(context.Context) (bool, error) {
		err = os.Remove(cg)
		return err == nil || errors.Is(err, os.ErrNotExist), nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", cg, err)
	}
	return nil
}
