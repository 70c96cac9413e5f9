package aws

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"

	"github.com/kubedirect/kubedirect/provision/spec"
)

//go:embed templates/userdata.sh.tmpl
var userDataTemplate string

var userData = template.Must(template.New("userdata").Option("missingkey=error").Parse(userDataTemplate))

// Bootstrap is what a node's user-data script needs to know.
type Bootstrap struct {
	Cluster           string
	NodeGroup         string
	Role              string
	ControlPlane      bool
	KubernetesVersion string // v1.34.4
	MinorVersion      string // v1.34, the package repository
	PackageVersion    string // 1.34.4-1.1, the deb version
	Region            string
	StateStore        string // s3://bucket/prefix/cluster, no trailing slash
	APIEndpoint       string // the internal API load balancer's DNS name: what the nodes use
	PublicAPIEndpoint string // the internet-facing one's: what the published admin kubeconfig names
	PodCIDR           string
	ServiceCIDR       string
	DSR               bool
	PublishKey        string // state-store key the control plane publishes the API's address and CA to
	Arch              string // the node group's architecture
	Bucket            string // the state store's bucket
	S3Endpoint        string // the region's S3 endpoint (path-style requests, so any bucket name works)
	BinaryKey         string // object key of the kubedirect binary for Arch
	DigestKey         string // object key of its SHA-256
	ConfigJSON        string // the NodeConfig `kubedirect node bootstrap` reads
}

// RenderUserData renders the bootstrap script of a node.
func RenderUserData(b Bootstrap) ([]byte, error) {
	var buf bytes.Buffer
	if err := userData.Execute(&buf, b); err != nil {
		return nil, fmt.Errorf("render user-data of node group %s: %w", b.NodeGroup, err)
	}
	return buf.Bytes(), nil
}

// bootstrap is the user-data input of a node group.
func (m *model) bootstrap(g spec.NodeGroup, apiEndpoint, publicAPIEndpoint string) Bootstrap {
	v := m.spec.Spec.KubernetesVersion
	minor := v
	if parts := strings.SplitN(v, ".", 3); len(parts) == 3 {
		minor = parts[0] + "." + parts[1]
	}
	arch := arch(machineType(g))
	cfg, _ := json.MarshalIndent(NodeConfig{
		Cluster: m.names.Cluster, NodeGroup: g.Name, ControlPlane: g.Role == spec.RoleControlPlane,
		KubernetesVersion: v, Region: m.region, StateStore: m.spec.Spec.AWS.StateStore,
		APIEndpoint: apiEndpoint, PublicAPIEndpoint: publicAPIEndpoint,
		PodCIDR: m.spec.Spec.Networking.PodCIDR, ServiceCIDR: m.spec.Spec.Networking.ServiceCIDR, DSR: m.dsr, Arch: arch,
	}, "", "  ")
	return Bootstrap{
		Arch: arch, Bucket: m.names.Bucket(), S3Endpoint: "https://s3." + m.region + ".amazonaws.com",
		BinaryKey: m.names.StateKey(BinaryFile(arch)), DigestKey: m.names.StateKey(DigestFile(arch)), ConfigJSON: string(cfg),
		Cluster: m.names.Cluster, NodeGroup: g.Name, Role: string(g.Role), ControlPlane: g.Role == spec.RoleControlPlane,
		KubernetesVersion: v, MinorVersion: minor, PackageVersion: strings.TrimPrefix(v, "v") + "-1.1",
		Region: m.region, StateStore: strings.TrimSuffix(m.names.StateStore(), "/"), APIEndpoint: apiEndpoint, PublicAPIEndpoint: publicAPIEndpoint,
		PodCIDR: m.spec.Spec.Networking.PodCIDR, ServiceCIDR: m.spec.Spec.Networking.ServiceCIDR, DSR: m.dsr,
		PublishKey: FileKubeconfig,
	}
}
