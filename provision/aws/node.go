package aws

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/kubedirect/kubedirect/provision/install"
	"github.com/kubedirect/kubedirect/provision/spec"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Node is what runs on an AWS node (`kubedirect node ...`): it reads the state store with the
// instance's role (credentials from IMDSv2 through the SDK's default chain).
type Node struct {
	// Names locate the cluster's state store.
	Names Names
	// S3 reads the state store.
	S3 S3API
	// EC2 finds the other control-plane instances (a replaced control plane removes its
	// predecessor's etcd member).
	EC2 InstanceAPI
	// Arch is the node's architecture (a GOARCH value).
	Arch string
	// BinaryPath is where the kubedirect binary lives on the node. Default: install.BinaryPath.
	BinaryPath string
	// HasImage reports whether containerd has the image ref. Default: ctr in namespace k8s.io.
	HasImage func(ctx context.Context, ref string) (bool, error)
	// Import imports a docker-archive into containerd. Default: ctr in namespace k8s.io.
	Import func(ctx context.Context, archive io.Reader) error
	// Client reaches the API server as this node's kubelet; nil before the node has joined.
	Client kubernetes.Interface
	// NodeName is this node's Node object.
	NodeName string
	// PublicIP is recorded on the Node (AnnotationPublicIPv4) for validation's outside client.
	PublicIP string
	// Log receives what the node does. Default: discarded.
	Log *slog.Logger
	// PollInterval and InitTimeout pace a control plane's wait for the one that initialises the
	// cluster. Defaults: 10s and 30m.
	PollInterval, InitTimeout time.Duration
}

// NewNode builds a node for the cluster's state store (s3://bucket[/prefix]) in region, with real
// S3 (AWS_ENDPOINT_URL_S3 is honoured, as in the rehearsal) and, once the node has joined, a client
// from the kubelet's kubeconfig.
func NewNode(ctx context.Context, cluster, stateStore, region, arch, nodeName, kubeletKubeconfig string, log *slog.Logger) (*Node, error) {
	bucket, prefix, err := spec.ParseStateStore(stateStore)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		// A stand-in S3 (moto) on an address has no per-bucket host names.
		o.UsePathStyle = os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != ""
	})
	n := &Node{Names: NewNames(cluster, bucket, prefix), S3: s3c, EC2: ec2.NewFromConfig(cfg), Arch: arch, NodeName: nodeName, Log: log}
	if b, err := os.ReadFile(kubeletKubeconfig); err == nil {
		rc, err := clientcmd.RESTConfigFromKubeConfig(b)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", kubeletKubeconfig, err)
		}
		if n.Client, err = kubernetes.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("kubernetes client: %w", err)
		}
	}
	return n, nil
}

func (n *Node) defaults() {
	if n.BinaryPath == "" {
		n.BinaryPath = install.BinaryPath
	}
	if n.HasImage == nil {
		n.HasImage = ctrHasImage
	}
	if n.Import == nil {
		n.Import = ctrImport
	}
	if n.Log == nil {
		n.Log = slog.New(slog.DiscardHandler)
	}
	if n.PollInterval == 0 {
		n.PollInterval = defaultPollInterval
	}
	if n.InitTimeout == 0 {
		n.InitTimeout = defaultInitTimeout
	}
}

// SyncImage makes the node run the binary in the state store: it replaces the local binary when the
// store's digest differs, imports the self-image built from it into containerd when containerd lacks
// it, and, once the node has joined, marks its Node with the image's tag. It returns the tag.
func (n *Node) SyncImage(ctx context.Context) (string, error) {
	n.defaults()
	st := store{n.S3, n.Names}
	want, err := st.get(ctx, DigestFile(n.Arch))
	if err != nil {
		return "", fmt.Errorf("sync image: %w", err)
	}
	digest := digestLine(want)
	local, _ := os.ReadFile(n.BinaryPath)
	if sha256Hex(local) != digest {
		bin, err := st.get(ctx, BinaryFile(n.Arch))
		if err != nil {
			return "", fmt.Errorf("sync image: %w", err)
		}
		if got := sha256Hex(bin); got != digest {
			// Caught between the CLI's two writes, or a corrupt object: try again at the next tick.
			return "", fmt.Errorf("sync image: %s%s has digest %s, the store says %s", n.Names.StateStore(), BinaryFile(n.Arch), got, digest)
		}
		if err := replaceFile(n.BinaryPath, bin, 0o755); err != nil {
			return "", fmt.Errorf("sync image: %w", err)
		}
		n.Log.Info("installed kubedirect binary", "path", n.BinaryPath, "sha256", digest)
		local = bin
	}
	img, err := install.BuildSelfImage(local, n.Arch)
	if err != nil {
		return "", err
	}
	ref := img.Image.Ref()
	has, err := n.HasImage(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("sync image: %w", err)
	}
	if !has {
		var archive bytes.Buffer
		if err := img.WriteArchive(&archive); err != nil {
			return "", err
		}
		if err := n.Import(ctx, &archive); err != nil {
			return "", fmt.Errorf("sync image: import %s: %w", ref, err)
		}
		n.Log.Info("imported image into containerd", "image", ref)
	}
	if n.Client == nil {
		n.Log.Info("not joined yet: the Node is marked at a later run", "image", ref)
		return img.Image.Tag, nil
	}
	node, err := n.Client.CoreV1().Nodes().Get(ctx, n.NodeName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("sync image: get node %s: %w", n.NodeName, err)
	}
	marks := map[string]string{AnnotationSelfImage: img.Image.Tag}
	if n.PublicIP != "" {
		marks[AnnotationPublicIPv4] = n.PublicIP
	}
	for k, v := range marks {
		if node.Annotations[k] == v {
			delete(marks, k)
		}
	}
	if len(marks) > 0 {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": marks}})
		if _, err := n.Client.CoreV1().Nodes().Patch(ctx, n.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return "", fmt.Errorf("sync image: mark node %s: %w", n.NodeName, err)
		}
		n.Log.Info("marked node", "node", n.NodeName, "annotations", marks)
	}
	return img.Image.Tag, nil
}

// replaceFile writes data next to path and renames it over path, so a running binary is replaced
// atomically (the running process keeps its old inode).
func replaceFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kubedirect-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func ctrHasImage(ctx context.Context, ref string) (bool, error) {
	out, err := exec.CommandContext(ctx, "ctr", "-n", "k8s.io", "images", "ls", "-q", "name=="+ref).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return false, fmt.Errorf("ctr images ls: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return false, fmt.Errorf("ctr images ls: %w", err)
	}
	return strings.TrimSpace(string(out)) != "", nil
}

func ctrImport(ctx context.Context, archive io.Reader) error {
	cmd := exec.CommandContext(ctx, "ctr", "-n", "k8s.io", "images", "import", "--all-platforms", "-")
	cmd.Stdin = archive
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr images import: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
