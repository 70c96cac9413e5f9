package aws

import (
	"encoding/json"
	"fmt"
	"sort"
)

// RequiredActions are the IAM actions the identity running kubedirect needs on AWS: every API call
// the provider makes, plus what AWS checks besides (tagging on create, passing the node roles to
// instances, launching instances through Auto Scaling with a launch template).
var RequiredActions = []string{
	"autoscaling:CreateAutoScalingGroup", "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteAutoScalingGroup",
	"autoscaling:DescribeAutoScalingGroups", "autoscaling:UpdateAutoScalingGroup",

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
	"elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:ModifyTargetGroupAttributes",

	"iam:AddRoleToInstanceProfile", "iam:CreateInstanceProfile", "iam:CreateRole", "iam:DeleteInstanceProfile",
	"iam:DeleteRole", "iam:DeleteRolePolicy", "iam:GetInstanceProfile", "iam:GetRole", "iam:GetRolePolicy",
	"iam:ListRolePolicies", "iam:PassRole", "iam:PutRolePolicy", "iam:RemoveRoleFromInstanceProfile",
	"iam:TagInstanceProfile", "iam:TagRole",

	"s3:DeleteObject", "s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket", "s3:PutObject",
}

// UserPolicy is an IAM policy document granting RequiredActions. IAM actions are limited to the
// kubedirect-* roles and instance profiles; S3 actions to the state-store bucket.
func UserPolicy(bucket string) ([]byte, error) {
	var iamActions, other []string
	for _, a := range RequiredActions {
		switch {
		case len(a) > 4 && a[:4] == "iam:":
			iamActions = append(iamActions, a)
		case len(a) > 3 && a[:3] == "s3:":
		default:
			other = append(other, a)
		}
	}
	var s3Actions []string
	for _, a := range RequiredActions {
		if len(a) > 3 && a[:3] == "s3:" {
			s3Actions = append(s3Actions, a)
		}
	}
	sort.Strings(iamActions)
	doc := policyDocument{Version: "2012-10-17", Statement: []statement{
		{Sid: "Provision", Effect: "Allow", Action: other, Resource: stringList{"*"}},
		{Sid: "NodeRoles", Effect: "Allow", Action: iamActions, Resource: stringList{"arn:aws:iam::*:role/kubedirect-*", "arn:aws:iam::*:instance-profile/kubedirect-*"}},
		{Sid: "StateStore", Effect: "Allow", Action: s3Actions, Resource: stringList{"arn:aws:s3:::" + bucket, "arn:aws:s3:::" + bucket + "/*"}},
	}}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode user policy: %w", err)
	}
	return b, nil
}
