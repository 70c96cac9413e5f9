package aws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kubedirect/kubedirect/provision/install"
	"github.com/kubedirect/kubedirect/provision/spec"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// How kubedirect's own image reaches AWS nodes without a registry: the CLI puts its (linux) binary in
// the state store, next to the join files every node may read; each node fetches it at boot and, from
// a systemd timer, whenever its digest changes, builds the same self-image from it (the image is a
// deterministic function of the binary, so every node gets the tag and ID the CLI computed) and
// imports it into containerd, then marks its Node with the tag. Re-running create with a new binary
// thus reaches every existing node, and a node the auto scaling group adds later runs the version in
// the store.

// AnnotationSelfImage is the Node annotation a node sets to the self-image tag it has imported.
const AnnotationSelfImage = "kubedirect.io/self-image"

// BinaryFile is the state-store file (relative to the cluster's directory) of the kubedirect binary
// for arch; DigestFile holds its hex SHA-256.
func BinaryFile(arch string) string { return dirBootstrap + "kubedirect-linux-" + arch }

// DigestFile is the state-store file of the hex SHA-256 of BinaryFile(arch).
func DigestFile(arch string) string { return BinaryFile(arch) + ".sha256" }

// ImageSyncTimeout bounds how long create waits for every node to import a new self-image.
var ImageSyncTimeout = 10 * time.Minute

// DeliverImage puts the self-image's binary in the state store and waits until every registered node
// has imported it (the nodes' timer runs every 20 seconds).
func (a *clusterProvider) DeliverImage(ctx context.Context, c *spec.Cluster, img *install.SelfImage, kubeconfig []byte) error {
	arch, err := a.NodeArch(c)
	if err != nil {
		return err
	}
	bin := img.Binary()
	if bin == nil {
		return errors.New("deliver image: the self-image carries no binary")
	}
	if err := a.publishBinary(ctx, c, arch, bin); err != nil {
		return err
	}
	cs, err := install.Clientset(kubeconfig)
	if err != nil {
		return fmt.Errorf("deliver image: %w", err)
	}
	return WaitImageImported(ctx, cs, img.Image.Tag, ImageSyncTimeout, 5*time.Second)
}

// publishBinary puts the binary and then its digest in the state store: a node that sees the new
// digest finds the new binary.
func (a *clusterProvider) publishBinary(ctx context.Context, c *spec.Cluster, arch string, bin []byte) error {
	st, err := a.store(ctx, c)
	if err != nil {
		return err
	}
	if err := st.put(ctx, BinaryFile(arch), bin); err != nil {
		return err
	}
	return st.put(ctx, DigestFile(arch), []byte(sha256Hex(bin)+"\n"))
}

// WaitImageImported waits until every Node carries AnnotationSelfImage=tag; the error names the nodes
// that do not.
func WaitImageImported(ctx context.Context, cs kubernetes.Interface, tag string, timeout, poll time.Duration) error {
	var lacking []string
	err := wait.PollUntilContextTimeout(ctx, poll, timeout, true, func(ctx context.Context) (bool, error) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil // the API may be briefly away
		}
		lacking = NodesLackingImage(nodes.Items, tag)
		return len(nodes.Items) > 0 && len(lacking) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("wait for nodes to import image tag %s: %s: %w (each node's kubedirect-image.timer imports it: journalctl -u kubedirect-image)",
			tag, strings.Join(lacking, ", "), err)
	}
	return nil
}

// NodesLackingImage names the nodes whose annotation is not tag, with what they have.
func NodesLackingImage(nodes []corev1.Node, tag string) []string {
	var out []string
	for _, n := range nodes {
		if have := n.Annotations[AnnotationSelfImage]; have != tag {
			if have == "" {
				have = "none"
			}
			out = append(out, fmt.Sprintf("%s (has %s)", n.Name, have))
		}
	}
	return out
}

// digestLine parses a DigestFile.
func digestLine(b []byte) string { return string(bytes.TrimSpace(b)) }
