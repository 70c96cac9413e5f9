package fake

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	asTypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
)

func code(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

func TestRefusesWhatAWSRefuses(t *testing.T) {
	ctx := context.Background()
	c := New("eu-west-1")
	e := c.EC2()
	vpc, _ := e.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	sn, err := e.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.0.0.0/24"), AvailabilityZone: aws.String("eu-west-1a")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.0.0.0/25"), AvailabilityZone: aws.String("eu-west-1a")}); code(err) != "InvalidSubnet.Conflict" {
		t.Errorf("overlapping subnet: %v", err)
	}
	if _, err := e.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String("10.0.1.0/24"), AvailabilityZone: aws.String("eu-west-1z")}); code(err) != "InvalidParameterValue" {
		t.Errorf("unknown zone: %v", err)
	}
	if _, err := e.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: vpc.Vpc.VpcId}); code(err) != "DependencyViolation" {
		t.Errorf("VPC with a subnet deleted: %v", err)
	}
	a, _ := e.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("a"), Description: aws.String("a"), VpcId: vpc.Vpc.VpcId})
	b, _ := e.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("b"), Description: aws.String("b"), VpcId: vpc.Vpc.VpcId})
	rule := []types.IpPermission{{IpProtocol: aws.String("udp"), FromPort: aws.Int32(8472), ToPort: aws.Int32(8472), UserIdGroupPairs: []types.UserIdGroupPair{{GroupId: b.GroupId}}}}
	if _, err := e.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: a.GroupId, IpPermissions: rule}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: a.GroupId, IpPermissions: rule}); code(err) != "InvalidPermission.Duplicate" {
		t.Errorf("duplicate rule: %v", err)
	}
	if _, err := e.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: b.GroupId}); code(err) != "DependencyViolation" {
		t.Errorf("referenced group deleted: %v", err)
	}
	g, _ := e.CreateInternetGateway(ctx, &ec2.CreateInternetGatewayInput{})
	_, _ = e.AttachInternetGateway(ctx, &ec2.AttachInternetGatewayInput{InternetGatewayId: g.InternetGateway.InternetGatewayId, VpcId: vpc.Vpc.VpcId})
	if _, err := e.DeleteInternetGateway(ctx, &ec2.DeleteInternetGatewayInput{InternetGatewayId: g.InternetGateway.InternetGatewayId}); code(err) != "DependencyViolation" {
		t.Errorf("attached gateway deleted: %v", err)
	}

	i := c.IAM()
	_, _ = i.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("r"), AssumeRolePolicyDocument: aws.String("{}")})
	_, _ = i.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("r"), PolicyName: aws.String("p"), PolicyDocument: aws.String("{}")})
	if _, err := i.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("r")}); code(err) != "DeleteConflict" {
		t.Errorf("role with a policy deleted: %v", err)
	}

	lt, _ := e.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("lt"), LaunchTemplateData: &types.RequestLaunchTemplateData{
		SecurityGroupIds: []string{aws.ToString(a.GroupId)}, IamInstanceProfile: &types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String("missing")}}})
	as := c.AutoScaling()
	if _, err := as.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"), MinSize: aws.Int32(1), MaxSize: aws.Int32(1), DesiredCapacity: aws.Int32(1),
		VPCZoneIdentifier: sn.Subnet.SubnetId, LaunchTemplate: nil}); err == nil {
		t.Error("group without a launch template created")
	}
	spec := &autoscaling.CreateAutoScalingGroupInput{AutoScalingGroupName: aws.String("g"), MinSize: aws.Int32(1), MaxSize: aws.Int32(1), DesiredCapacity: aws.Int32(1),
		VPCZoneIdentifier: sn.Subnet.SubnetId, LaunchTemplate: &asTypes.LaunchTemplateSpecification{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: aws.String("$Default")}}
	if _, err := as.CreateAutoScalingGroup(ctx, spec); code(err) != "ValidationError" {
		t.Errorf("group whose instance profile is missing: %v", err)
	}
	if c.Count("Instance") != 0 {
		t.Errorf("%d instances launched", c.Count("Instance"))
	}
}
