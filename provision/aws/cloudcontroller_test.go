package aws

import (
	"strings"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/kubedirect/kubedirect/internal/testutil"
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
	testutil.WantContains(t, "rendered chart", out,
		"image: \"registry.k8s.io/provider-aws/cloud-controller-manager:"+c.Spec.KubernetesVersion+"\"",
		"--cluster-name=prod", "--cloud-provider=aws", "--configure-cloud-routes=false",
		"key: node.cloudprovider.kubernetes.io/uninitialized", "node-role.kubernetes.io/control-plane: \"\"",
		"hostNetwork: true", "fieldPath: status.hostIP",
	)
	m, _ := newModel(c, "")
	if nodes := mustJSON(m.policy(roleNodes)); strings.Contains(nodes, "elasticloadbalancing:") {
		t.Errorf("workers may change load balancers: %s", nodes)
	}
	if cp := mustJSON(m.policy(roleControlPlane)); !strings.Contains(cp, "elasticloadbalancing:CreateLoadBalancer") || strings.Contains(cp, "ec2:CreateVolume") {
		t.Errorf("control plane lacks the load-balancer permissions or has volume ones: %s", cp)
	}
}

// TestSecondCreateKeepsTheCloudControllersRules: the rules aws-cloud-controller-manager adds to the
// nodes' security group for a Service's network load balancer (client traffic and health checks to
// its NodePorts) are its own: a second create neither plans to remove them nor removes them.
func TestSecondCreateKeepsTheCloudControllersRules(t *testing.T) {
	e, ctx := newCreatedEnv(t)
	ec2c := e.cloud.EC2()
	sgs, err := ec2c.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{{Name: awssdk.String("group-name"), Values: []string{"kubedirect-prod-nodes"}}}})
	if err != nil || len(sgs.SecurityGroups) != 1 {
		t.Fatalf("nodes' security group: %v %v", sgs, err)
	}
	id := sgs.SecurityGroups[0].GroupId
	_, err = ec2c.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: id, IpPermissions: []ec2types.IpPermission{{
		IpProtocol: awssdk.String("tcp"), FromPort: awssdk.Int32(31234), ToPort: awssdk.Int32(31234),
		IpRanges: []ec2types.IpRange{{CidrIp: awssdk.String("0.0.0.0/0"), Description: awssdk.String("kubernetes.io/rule/nlb/client=a0123456789abcdef")}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	e.wantNoChanges(t, ctx, "after the cloud controller added a rule")
	if _, err := e.p.Create(ctx, e.c); err != nil {
		t.Fatal(err)
	}
	if n := e.cloud.MutatingCalls()["RevokeSecurityGroupIngress"]; n != 0 {
		t.Errorf("second create revoked %d rules", n)
	}
}
