package aws

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// RequiredActions are the IAM actions the identity running kubedirect needs on AWS: every API call
// the provider makes, plus what AWS checks besides (tagging on create, passing the node roles to
// instances, launching instances through Auto Scaling with a launch template, creating the
// service-linked roles of Elastic Load Balancing and Auto Scaling in a fresh account).
var RequiredActions = []string{
	"autoscaling:AttachLoadBalancerTargetGroups", "autoscaling:CreateAutoScalingGroup", "autoscaling:CreateOrUpdateTags",
	"autoscaling:DeleteAutoScalingGroup", "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScalingActivities",
	"autoscaling:UpdateAutoScalingGroup",

	"ec2:AssociateRouteTable", "ec2:AttachInternetGateway", "ec2:AuthorizeSecurityGroupIngress", "ec2:CreateInternetGateway",
	"ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion", "ec2:CreateRoute", "ec2:CreateRouteTable",
	"ec2:CreateSecurityGroup", "ec2:CreateSubnet", "ec2:CreateTags", "ec2:CreateVpc", "ec2:DeleteInternetGateway",
	"ec2:DeleteKeyPair", "ec2:DeleteLaunchTemplate", "ec2:DeleteRouteTable", "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet",
	"ec2:DeleteVpc", "ec2:DescribeAvailabilityZones", "ec2:DescribeImages", "ec2:DescribeInstances",
	"ec2:DescribeInternetGateways", "ec2:DescribeKeyPairs", "ec2:DescribeLaunchTemplateVersions",
	"ec2:DescribeLaunchTemplates", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets",
	"ec2:DescribeVpcAttribute", "ec2:DescribeVpcs", "ec2:DetachInternetGateway", "ec2:DisassociateRouteTable",
	"ec2:ImportKeyPair", "ec2:ModifyLaunchTemplate", "ec2:ModifySubnetAttribute", "ec2:ModifyVpcAttribute",
	"ec2:ReplaceRoute", "ec2:RevokeSecurityGroupIngress", "ec2:RunInstances",

	"elasticloadbalancing:AddTags", "elasticloadbalancing:CreateListener", "elasticloadbalancing:CreateLoadBalancer",
	"elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:DeleteTargetGroup",
	"elasticloadbalancing:DescribeListeners", "elasticloadbalancing:DescribeLoadBalancers",
	"elasticloadbalancing:DescribeTags", "elasticloadbalancing:DescribeTargetGroupAttributes",
	"elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
	"elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",

	"iam:AddRoleToInstanceProfile", "iam:CreateInstanceProfile", "iam:CreateRole", "iam:CreateServiceLinkedRole", "iam:DeleteInstanceProfile",
	"iam:DeleteRole", "iam:DeleteRolePolicy", "iam:GetInstanceProfile", "iam:GetRole", "iam:GetRolePolicy",
	"iam:ListRolePolicies", "iam:PassRole", "iam:PutRolePolicy", "iam:RemoveRoleFromInstanceProfile",
	"iam:TagInstanceProfile", "iam:TagRole",

	"s3:DeleteObject", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:PutObject",
}

// serviceLinkedRoleServices are the services whose service-linked roles AWS creates, with the
// caller's permissions, when an account makes its first network load balancer and its first auto
// scaling group; without iam:CreateServiceLinkedRole for them a fresh account cannot create a cluster.
var serviceLinkedRoleServices = stringList{"elasticloadbalancing.amazonaws.com", "autoscaling.amazonaws.com"}

// UserPolicy is an IAM policy document granting RequiredActions. IAM actions are limited to the
// kubedirect-* roles and instance profiles, and iam:CreateServiceLinkedRole to the service-linked
// roles of Elastic Load Balancing and Auto Scaling; S3 actions to the state-store bucket.
func UserPolicy(bucket string) ([]byte, error) {
	var other, iamActions, s3Actions stringList
	for _, a := range RequiredActions {
		switch {
		case a == "iam:CreateServiceLinkedRole":
		case strings.HasPrefix(a, "iam:"):
			iamActions = append(iamActions, a)
		case strings.HasPrefix(a, "s3:"):
			s3Actions = append(s3Actions, a)
		default:
			other = append(other, a)
		}
	}
	sort.Strings(iamActions)
	doc := policyDocument{Version: "2012-10-17", Statement: []statement{
		{Sid: "Provision", Effect: "Allow", Action: other, Resource: stringList{"*"}},
		{Sid: "NodeRoles", Effect: "Allow", Action: iamActions, Resource: stringList{"arn:aws:iam::*:role/kubedirect-*", "arn:aws:iam::*:instance-profile/kubedirect-*"}},
		{
			Sid: "ServiceLinkedRoles", Effect: "Allow", Action: stringList{"iam:CreateServiceLinkedRole"},
			Resource:  stringList{"arn:aws:iam::*:role/aws-service-role/*"},
			Condition: map[string]map[string]stringList{"StringEquals": {"iam:AWSServiceName": serviceLinkedRoleServices}},
		},
		{Sid: "StateStore", Effect: "Allow", Action: s3Actions, Resource: stringList{"arn:aws:s3:::" + bucket, "arn:aws:s3:::" + bucket + "/*"}},
	}}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode user policy: %w", err)
	}
	return b, nil
}
