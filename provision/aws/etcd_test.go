package aws

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/internal/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdMember is a real etcd process (the one hack/build-k8s.sh builds) on a loopback address.
type etcdMember struct {
	name, ip     string
	client, peer string
	cmd          *exec.Cmd
	dataDir      string
}

// newEtcdMembers plans members on 127.0.0.1, 127.0.0.2, ... (all loopback on Linux), so that each has
// its own address as a control plane does.
func newEtcdMembers(t *testing.T, n int) []*etcdMember {
	var ms []*etcdMember
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		ms = append(ms, &etcdMember{
			name: fmt.Sprintf("cp-%d", i+1), ip: ip,
			client: "http://" + ip + ":" + strconv.Itoa(testutil.FreePort(t, ip)), peer: "http://" + ip + ":" + strconv.Itoa(testutil.FreePort(t, ip)),
			dataDir: filepath.Join(t.TempDir(), "data"),
		})
	}
	return ms
}

func (m *etcdMember) start(t *testing.T, bin, initialCluster string) {
	t.Helper()
	m.cmd = exec.Command(bin, "--name", m.name, "--data-dir", m.dataDir,
		"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
		"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--log-level", "error")
	var out strings.Builder
	m.cmd.Stdout, m.cmd.Stderr = &out, &out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			t.Logf("etcd %s:\n%s", m.name, out.String())
		}
	})
}

func (m *etcdMember) stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		_ = m.cmd.Process.Signal(syscall.SIGKILL)
		_ = m.cmd.Wait()
		m.cmd = nil
	}
}

func startEtcdCluster(t *testing.T, n int) []*etcdMember {
	t.Helper()
	bin := k8sBinary(t, "etcd")
	ms := newEtcdMembers(t, n)
	var initial []string
	for _, m := range ms {
		initial = append(initial, m.name+"="+m.peer)
	}
	for _, m := range ms {
		m.start(t, bin, strings.Join(initial, ","))
	}
	return ms
}

func etcdClient(t *testing.T, ms ...*etcdMember) *clientv3.Client {
	t.Helper()
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.client)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	// Ready when a write is committed (a cluster needs its quorum to have met).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if _, err := cli.Put(ctx, "/kubedirect/ready", "1"); err == nil {
			return cli
		} else if ctx.Err() != nil {
			t.Fatalf("etcd not ready: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestEtcdMemberOfReplacedControlPlaneIsRemoved: of three control planes one instance is terminated;
// its member is removed so that the cluster counts two votes again, and the live ones stay.
func TestEtcdMemberOfReplacedControlPlaneIsRemoved(t *testing.T) {
	ms := startEtcdCluster(t, 3)
	cli := etcdClient(t, ms[0], ms[1])
	ms[2].stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := RemoveDeadMembers(ctx, cli, nil); err == nil {
		t.Error("no live control plane known, and members were judged")
	}
	// Instances at other addresses than etcd's members (a list that disagrees with etcd) remove
	// nothing.
	if removed, err := RemoveDeadMembers(ctx, cli, []string{"127.0.0.9"}); err == nil || len(removed) > 0 {
		t.Errorf("no member at a live address: removed %v, err %v", removed, err)
	}
	removed, err := RemoveDeadMembers(ctx, cli, []string{ms[0].ip, ms[1].ip})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"cp-3"}) {
		t.Errorf("removed %v, want [cp-3]", removed)
	}
	list, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list.Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"cp-1", "cp-2"}) {
		t.Errorf("members %v, want [cp-1 cp-2]", names)
	}
	if _, err := cli.Put(ctx, "/registry/after", "ok"); err != nil {
		t.Errorf("write after the removal: %v", err)
	}
}

// TestEtcdSnapshotRestoresTheKeys: the snapshot in the state store brings back what etcd held when it
// was taken (and not what was written after), with revisions past the old ones; the store keeps the
// newest EtcdSnapshotsKept snapshots.
func TestEtcdSnapshotRestoresTheKeys(t *testing.T) {
	e := newEnv(t)
	names, _ := clusterNames(e.c)
	n := &Node{Names: names, S3: e.cloud.S3()}
	ms := startEtcdCluster(t, 1)
	cli := etcdClient(t, ms[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/registry/services/specs/default/web", "before"); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range EtcdSnapshotsKept {
		e.cloud.PutObject("example-kubedirect-state", names.StateKey(DirEtcdBackups+snapshotName(base.Add(time.Duration(i)*time.Hour))), []byte("old"))
	}
	file, err := n.SnapshotEtcd(ctx, cli, ms[0].client, base.Add(1000*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if file != DirEtcdBackups+"20261212T160000Z.db" {
		t.Errorf("snapshot saved as %q", file)
	}
	kept := e.cloud.Objects("example-kubedirect-state", names.StateKey(DirEtcdBackups))
	if len(kept) != EtcdSnapshotsKept || slices.Contains(kept, names.StateKey(DirEtcdBackups+snapshotName(base))) {
		t.Errorf("kept %d snapshots (%v), want the newest %d", len(kept), kept[:min(3, len(kept))], EtcdSnapshotsKept)
	}
	old, _ := cli.Get(ctx, "/registry/services/specs/default/web")
	if _, err := cli.Put(ctx, "/registry/services/specs/default/web", "after"); err != nil {
		t.Fatal(err)
	}
	ms[0].stop()

	restored := newEtcdMembers(t, 1)[0]
	if _, err := n.RestoreEtcd(ctx, "latest", restored.dataDir, restored.name, restored.peer); err != nil {
		t.Fatal(err)
	}
	restored.start(t, k8sBinary(t, "etcd"), restored.name+"="+restored.peer)
	rcli := etcdClient(t, restored)
	got, err := rcli.Get(ctx, "/registry/services/specs/default/web")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "before" {
		t.Errorf("restored %v, want the value at the snapshot", got.Kvs)
	}
	if got.Header.Revision <= old.Header.Revision+etcdRevisionBump-1 {
		t.Errorf("revision %d after restore, want past %d", got.Header.Revision, old.Header.Revision+etcdRevisionBump)
	}
}
