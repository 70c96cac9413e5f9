package aws

import (
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/install"
)

// TestCloudControllerRunsOnControlPlanesBeforeTheDataplane: create installs upstream's
// aws-cloud-controller-manager at the cluster's Kubernetes version, named after the cluster, on the
// control planes (whose role has its permissions), tolerating the taint it exists to lift and
// reaching the API server on the node itself (no kube-proxy, no dataplane yet).
func TestCloudControllerRunsOnControlPlanesBeforeTheDataplane(t *testing.T) {
	c := loadExample(t)
	p := NewProvider().AsProvisionProvider("")
	cc, ok := p.(provision.CloudController)
	if !ok {
		t.Fatal("the AWS provider installs no cloud controller")
	}
	vals, err := cc.CloudControllerValues(c)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := install.LoadCloudControllerChart()
	if err != nil {
		t.Fatal(err)
	}
	out, err := install.RenderChart(ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"image: \"registry.k8s.io/provider-aws/cloud-controller-manager:" + c.Spec.KubernetesVersion + "\"",
		"--cluster-name=prod", "--cloud-provider=aws", "--configure-cloud-routes=false",
		"key: node.cloudprovider.kubernetes.io/uninitialized", "node-role.kubernetes.io/control-plane: \"\"",
		"hostNetwork: true", "fieldPath: status.hostIP",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered chart lacks %q:\n%s", want, out)
		}
	}
	m, _ := newModel(c, "")
	if nodes := mustJSON(m.policy(roleNodes)); strings.Contains(nodes, "elasticloadbalancing:") {
		t.Errorf("workers may change load balancers: %s", nodes)
	}
	if cp := mustJSON(m.policy(roleControlPlane)); !strings.Contains(cp, "elasticloadbalancing:CreateLoadBalancer") || strings.Contains(cp, "ec2:CreateVolume") {
		t.Errorf("control plane lacks the load-balancer permissions or has volume ones: %s", cp)
	}
}
