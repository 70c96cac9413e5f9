package aws

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func ec2Tags(tags map[string]string) []ec2types.Tag {
	out := make([]ec2types.Tag, 0, len(tags))
	for _, k := range sortedKeys(tags) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

func tagSpec(rt ec2types.ResourceType, tags map[string]string) []ec2types.TagSpecification {
	return []ec2types.TagSpecification{{ResourceType: rt, Tags: ec2Tags(tags)}}
}

func filter(name string, values ...string) ec2types.Filter {
	return ec2types.Filter{Name: aws.String(name), Values: values}
}

// owned are the filters that find the cluster's resource of this Name.
func (m *model) owned(name string) []ec2types.Filter {
	f := []ec2types.Filter{filter("tag:"+TagCluster, m.names.Cluster)}
	if name != "" {
		f = append(f, filter("tag:"+tagName, name))
	}
	return f
}

func boolValue(b bool) *ec2types.AttributeBooleanValue {
	return &ec2types.AttributeBooleanValue{Value: aws.Bool(b)}
}

func fmtBool(b *bool) string {
	if aws.ToBool(b) {
		return "true"
	}
	return "false"
}
