package aws

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubedirect/kubedirect/provision/install"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
)

// containerd counts imports per image reference, standing in for the node's containerd (the
// rehearsal runs the real one).
type containerd struct{ images map[string]int }

func (c *containerd) has(_ context.Context, ref string) (bool, error) { return c.images[ref] > 0, nil }

// TestReRunningCreateUpgradesTheAgentImageOnEveryNode: the binary the CLI delivers reaches an existing
// node, which installs it, imports the self-image with the tag the CLI computed and marks its Node;
// a second delivery of a new binary replaces it the same way; a node added later gets the current one.
func TestReRunningCreateUpgradesTheAgentImageOnEveryNode(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	a := e.p.AsProvisionProvider("").(*clusterProvider)
	names, _ := clusterNames(e.c)
	cs := k8sfake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-172-20-0-10"}}, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-172-20-0-11"}})
	newNode := func(name string) (*Node, *containerd) {
		ctrd := &containerd{images: map[string]int{}}
		n := &Node{Names: names, S3: e.cloud.S3(), Arch: "amd64", BinaryPath: filepath.Join(t.TempDir(), "kubedirect"),
			Client: cs, NodeName: name, HasImage: ctrd.has}
		n.Import = func(ctx context.Context, r io.Reader) error {
			if _, err := io.Copy(io.Discard, r); err != nil {
				return err
			}
			b, _ := os.ReadFile(n.BinaryPath)
			img, _ := install.BuildSelfImage(b, "amd64")
			ctrd.images[img.Image.Ref()]++
			return nil
		}
		return n, ctrd
	}
	n0, c0 := newNode("ip-172-20-0-10")
	n1, _ := newNode("ip-172-20-0-11")
	for i, bin := range [][]byte{[]byte("kubedirect v1"), []byte("kubedirect v2")} {
		img, err := install.BuildSelfImage(bin, "amd64")
		if err != nil {
			t.Fatal(err)
		}
		if err := a.publishBinary(ctx, e.c, "amd64", bin); err != nil {
			t.Fatal(err)
		}
		if err := WaitImageImported(ctx, cs, img.Image.Tag, time.Millisecond, time.Millisecond); err == nil {
			t.Fatalf("round %d: nodes counted as upgraded before they synced", i)
		}
		for _, n := range []*Node{n0, n1} {
			tag, err := n.SyncImage(ctx)
			if err != nil || tag != img.Image.Tag {
				t.Fatalf("round %d: sync on %s: tag %q (want %q), %v", i, n.NodeName, tag, img.Image.Tag, err)
			}
			if got, _ := os.ReadFile(n.BinaryPath); string(got) != string(bin) {
				t.Errorf("round %d: %s runs %q", i, n.NodeName, got)
			}
		}
		if err := WaitImageImported(ctx, cs, img.Image.Tag, time.Second, time.Millisecond); err != nil {
			t.Errorf("round %d: %v", i, err)
		}
		// Nothing changed: a second tick imports nothing again.
		if _, err := n0.SyncImage(ctx); err != nil || c0.images[img.Image.Ref()] != 1 {
			t.Errorf("round %d: second tick imported %d times, %v", i, c0.images[img.Image.Ref()], err)
		}
	}
	// A node the auto scaling group adds later, before it has joined, gets the current binary.
	late, _ := newNode("ip-172-20-0-12")
	late.Client = nil
	tag, err := late.SyncImage(ctx)
	want, _ := install.BuildSelfImage([]byte("kubedirect v2"), "amd64")
	if err != nil || tag != want.Image.Tag {
		t.Errorf("late node: %q %v", tag, err)
	}
}

// TestCorruptBinaryIsNotInstalled: a binary whose digest does not match the store's is refused and
// the node keeps what it runs.
func TestCorruptBinaryIsNotInstalled(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	names, _ := clusterNames(e.c)
	e.cloud.PutObject("example-kubedirect-state", names.StateKey(BinaryFile("amd64")), []byte("half a binary"))
	e.cloud.PutObject("example-kubedirect-state", names.StateKey(DigestFile("amd64")), []byte(sha256Hex([]byte("the whole binary"))+"\n"))
	path := filepath.Join(t.TempDir(), "kubedirect")
	if err := os.WriteFile(path, []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	n := &Node{Names: names, S3: e.cloud.S3(), Arch: "amd64", BinaryPath: path,
		HasImage: func(context.Context, string) (bool, error) { return false, nil },
		Import:   func(context.Context, io.Reader) error { t.Error("imported an image"); return nil }}
	if _, err := n.SyncImage(ctx); err == nil {
		t.Fatal("sync accepted a binary with the wrong digest")
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("binary replaced with %q", b)
	}
}
