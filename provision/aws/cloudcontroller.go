package aws

import (
	"fmt"

	"github.com/kubedirect/kubedirect/provision"
	"github.com/kubedirect/kubedirect/provision/spec"
)

// CloudControllerImage is the image of aws-cloud-controller-manager create installs: upstream's, at
// the cluster's Kubernetes version (cloud-provider-aws releases one per Kubernetes release).
func CloudControllerImage(c *spec.Cluster) string {
	return cloudControllerRepository + ":" + c.Spec.KubernetesVersion
}

const cloudControllerRepository = "registry.k8s.io/provider-aws/cloud-controller-manager"

// cloudControllerRulePrefix starts the description of every ingress rule aws-cloud-controller-manager
// adds to the nodes' security group for a network load balancer (kubernetes.io/rule/nlb/client=<lb>,
// .../health=<lb>, .../mtu=<lb>): create leaves those rules to it.
const cloudControllerRulePrefix = "kubernetes.io/rule/nlb/"

// CloudControllerValues are the values of manifests' aws-cloud-controller-manager chart: upstream's
// image at the cluster's version, the cluster's name (the kubernetes.io/cluster/<name> tag every
// resource of the cluster has, by which the controller finds subnets and security groups).
func (a *clusterProvider) CloudControllerValues(c *spec.Cluster) (map[string]any, error) {
	if c.Spec.KubernetesVersion == "" {
		return nil, fmt.Errorf("cloud controller of %q: spec.kubernetesVersion is empty", c.Metadata.Name)
	}
	return map[string]any{
		"image":       map[string]any{"repository": cloudControllerRepository, "tag": c.Spec.KubernetesVersion},
		"clusterName": c.Metadata.Name,
	}, nil
}

// cloudControllerStatements are what aws-cloud-controller-manager needs on the control-plane role to
// initialise Nodes and to give Services of type LoadBalancer a network load balancer (the Service
// carries service.beta.kubernetes.io/aws-load-balancer-type: nlb): the subset of upstream's
// control-plane policy for those two controllers. Not granted: classic load balancers, volumes
// (no in-tree volumes; the EBS CSI driver has its own role) and routes (kubedirect routes pods).
// Describe calls cannot be limited to resources; the security-group changes are limited to groups
// tagged as the cluster's, which are the nodes' group and the ones the controller makes for its
// load balancers (it tags them kubernetes.io/cluster/<name>).
func (m *model) cloudControllerStatements() []statement {
	clusterTag := map[string]map[string]stringList{"StringEquals": {"aws:ResourceTag/" + KubernetesClusterTag(m.names.Cluster): {"owned"}}}
	return []statement{
		{Sid: "CloudControllerDescribe", Effect: "Allow", Action: stringList{
			"ec2:DescribeAvailabilityZones", "ec2:DescribeInstances", "ec2:DescribeRegions", "ec2:DescribeRouteTables",
			"ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
			"elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeLoadBalancerAttributes",
			"elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeTags",
			"elasticloadbalancing:DescribeTargetGroupAttributes", "elasticloadbalancing:DescribeTargetGroups",
			"elasticloadbalancing:DescribeTargetHealth",
		}, Resource: stringList{"*"}},
		{Sid: "CloudControllerSecurityGroups", Effect: "Allow", Action: stringList{
			"ec2:AuthorizeSecurityGroupIngress", "ec2:DeleteSecurityGroup", "ec2:RevokeSecurityGroupIngress",
		}, Resource: stringList{"*"}, Condition: clusterTag},
		{Sid: "CloudControllerNewSecurityGroups", Effect: "Allow", Action: stringList{"ec2:CreateSecurityGroup", "ec2:CreateTags"}, Resource: stringList{"*"}},
		{Sid: "CloudControllerLoadBalancers", Effect: "Allow", Action: stringList{
			"elasticloadbalancing:AddTags", "elasticloadbalancing:CreateListener", "elasticloadbalancing:CreateLoadBalancer",
			"elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:DeleteListener", "elasticloadbalancing:DeleteLoadBalancer",
			"elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:ModifyListener",
			"elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:ModifyTargetGroup",
			"elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:RegisterTargets",
			"elasticloadbalancing:SetSecurityGroups",
		}, Resource: stringList{"arn:aws:elasticloadbalancing:" + m.region + ":*:*"}},
	}
}

var _ provision.CloudController = (*clusterProvider)(nil)
