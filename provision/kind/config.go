// Package kind creates and deletes kubedirect clusters on kind through the sigs.k8s.io/kind library.
package kind

import (
	"fmt"

	"github.com/kubedirect/kubedirect/provision/spec"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

// NodeGroupLabel is put on every node with the name of the spec's node group it belongs to.
const NodeGroupLabel = "kubedirect.io/node-group"

// proxyModeNone turns kube-proxy off; v1alpha4 has no constant for it.
const proxyModeNone = v1alpha4.ProxyMode("none")

// Config translates a defaulted, valid spec into the kind cluster config that creates it: kube-proxy
// off, no default CNI (the kubedirect chart installs ours), the spec's subnets, and one node per count
// of each group, control plane first.
func Config(c *spec.Cluster) *v1alpha4.Cluster {
	cfg := &v1alpha4.Cluster{
		TypeMeta: v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:     c.Metadata.Name,
		Networking: v1alpha4.Networking{
			IPFamily:          v1alpha4.IPv4Family,
			PodSubnet:         c.Spec.Networking.PodCIDR,
			ServiceSubnet:     c.Spec.Networking.ServiceCIDR,
			DisableDefaultCNI: true,
			KubeProxyMode:     proxyModeNone,
		},
	}
	for _, role := range []spec.NodeRole{spec.RoleControlPlane, spec.RoleWorker} {
		for _, g := range c.Spec.NodeGroups {
			if g.Role != role {
				continue
			}
			for range g.Count {
				cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{
					Role:   kindRole(g.Role),
					Image:  c.Spec.Kind.NodeImage,
					Labels: map[string]string{NodeGroupLabel: g.Name},
				})
			}
		}
	}
	return cfg
}

func kindRole(r spec.NodeRole) v1alpha4.NodeRole {
	if r == spec.RoleControlPlane {
		return v1alpha4.ControlPlaneRole
	}
	return v1alpha4.WorkerRole
}

// ConfigYAML renders Config(c) as the YAML a kind user would write.
func ConfigYAML(c *spec.Cluster) ([]byte, error) {
	out, err := yaml.Marshal(Config(c))
	if err != nil {
		return nil, fmt.Errorf("render kind config: %w", err)
	}
	return out, nil
}
