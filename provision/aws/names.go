package aws

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"

	"github.com/kubedirect/kubedirect/provision/spec"
)

// Tag keys every resource of a cluster carries.
const (
	// TagCluster is kubedirect's own ownership tag; its value is the cluster name.
	TagCluster = "kubedirect.io/cluster"
	// TagRole marks instances (through their group) with their node role.
	TagRole = "kubedirect.io/role"
	// TagPublicKey holds the SHA-256 of an imported public key, to notice a changed key.
	TagPublicKey = "kubedirect.io/public-key-sha256"
	tagName      = "Name"
)

// KubernetesClusterTag is the tag key Kubernetes' AWS integrations use to find a cluster's resources;
// its value is "owned".
func KubernetesClusterTag(cluster string) string { return "kubernetes.io/cluster/" + cluster }

// Names builds every name the provider gives AWS resources and state-store objects, in one place.
type Names struct {
	Cluster string
	bucket  string
	prefix  string
}

// clusterNames checks that the spec has its aws section and derives the names of the cluster's
// resources and state-store keys from it.
func clusterNames(c *spec.Cluster) (Names, error) {
	if c.Spec.AWS == nil {
		return Names{}, fmt.Errorf("cluster %q: spec.aws is required with provider aws", c.Metadata.Name)
	}
	bucket, prefix, err := spec.ParseStateStore(c.Spec.AWS.StateStore)
	if err != nil {
		return Names{}, fmt.Errorf("parse spec.aws.stateStore: %w", err)
	}
	return NewNames(c.Metadata.Name, bucket, prefix), nil
}

// NewNames returns the names of a cluster whose state lives under s3://bucket/prefix.
func NewNames(cluster, bucket, prefix string) Names {
	return Names{Cluster: cluster, bucket: bucket, prefix: prefix}
}

func (n Names) base() string { return "kubedirect-" + n.Cluster }

// VPC is the Name tag of the cluster's VPC, internet gateway and route table.
func (n Names) VPC() string { return n.base() }

// Subnet is the Name tag of the cluster's subnet in zone.
func (n Names) Subnet(zone string) string { return n.base() + "-" + zone }

// SecurityGroup is the group name (and Name tag) of one of the cluster's security groups.
func (n Names) SecurityGroup(purpose string) string { return n.base() + "-" + purpose }

// Role is the name of the IAM role, and of its instance profile and inline policy, of a node role.
func (n Names) Role(role string) string { return n.base() + "-" + role }

// KeyPair is the name of the imported SSH key pair.
func (n Names) KeyPair() string { return n.base() }

// NodeGroup is the name of a node group's launch template and auto scaling group.
func (n Names) NodeGroup(group string) string { return n.base() + "-" + group }

// LoadBalancer is the name of the API's internet-facing network load balancer and of its target
// group.
func (n Names) LoadBalancer() string { return n.elbName("api") }

// InternalLoadBalancer is the name of the API's internal network load balancer, the one the nodes
// use, and of its target group.
func (n Names) InternalLoadBalancer() string { return n.elbName("api-int") }

// elbName is a load balancer or target group name; AWS allows 32 characters, so long cluster names are
// shortened with a hash that keeps them unique.
func (n Names) elbName(suffix string) string {
	name := n.base() + "-" + suffix
	if len(name) <= 32 {
		return name
	}
	sum := sha256.Sum256([]byte(n.Cluster))
	short := n.Cluster[:min(len(n.Cluster), 32-len("kd--123456-")-len(suffix))]
	for len(short) > 0 && short[len(short)-1] == '-' {
		short = short[:len(short)-1]
	}
	return fmt.Sprintf("kd-%s-%s-%s", short, hex.EncodeToString(sum[:3]), suffix)
}

// StateStore is the s3:// URL of the cluster's directory in the state store.
func (n Names) StateStore() string { return "s3://" + n.bucket + "/" + n.StateKey("") }

// Bucket is the state store's bucket.
func (n Names) Bucket() string { return n.bucket }

// StateKey is the object key of a file of the cluster in the state store; "" is its directory.
func (n Names) StateKey(file string) string {
	dir := path.Join(n.prefix, n.Cluster) + "/"
	if n.prefix == "" {
		dir = n.Cluster + "/"
	}
	return dir + file
}

// State-store files, relative to the cluster's directory.
const (
	FileSpec       = "spec.yaml"
	FileState      = "state.json"
	FileCACert     = "pki/ca.crt"
	FileCAKey      = "pki/ca.key"
	FileToken      = "bootstrap/token"
	FileCACertHash = "bootstrap/ca-cert-hash"
	FileKubeconfig = "kubeconfig/admin.conf"
	dirPKI         = "pki/"
	dirBootstrap   = "bootstrap/"

	// The key pairs besides the CA that every control-plane node shares, at the paths kubeadm
	// expects them under /etc/kubernetes/pki.
	FileFrontProxyCACert = "pki/front-proxy-ca.crt"
	FileFrontProxyCAKey  = "pki/front-proxy-ca.key"
	FileEtcdCACert       = "pki/etcd/ca.crt"
	FileEtcdCAKey        = "pki/etcd/ca.key"
	FileSAKey            = "pki/sa.key"
	FileSAPub            = "pki/sa.pub"

	// FileInitLock names the control-plane instance that runs kubeadm init (a conditional write: the
	// first wins); FileInitialised, the cluster marker, says that it succeeded, so every later
	// control-plane instance joins.
	FileInitLock    = "control-plane/init-lock"
	FileInitialised = "control-plane/initialised"
	dirControlPlane = "control-plane/"

	// DirEtcdBackups holds the etcd snapshots the control plane takes (EtcdSnapshotSchedule).
	DirEtcdBackups = "backups/etcd/"
)
