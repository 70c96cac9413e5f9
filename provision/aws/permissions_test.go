package aws

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
)

// TestRequiredActionsCoverEveryCall checks the documented permissions against the API interfaces:
// a new call without its IAM action fails here.
func TestRequiredActionsCoverEveryCall(t *testing.T) {
	services := map[string]reflect.Type{
		"ec2":                  reflect.TypeFor[EC2API](),
		"iam":                  reflect.TypeFor[IAMAPI](),
		"autoscaling":          reflect.TypeFor[AutoScalingAPI](),
		"elasticloadbalancing": reflect.TypeFor[ELBAPI](),
		"s3":                   reflect.TypeFor[S3API](),
	}
	rename := map[string]string{"s3:ListObjectsV2": "s3:ListBucket"}
	for prefix, typ := range services {
		for i := range typ.NumMethod() {
			action := prefix + ":" + typ.Method(i).Name
			if r, ok := rename[action]; ok {
				action = r
			}
			if !slices.Contains(RequiredActions, action) {
				t.Errorf("RequiredActions lacks %s", action)
			}
		}
	}
	doc, err := UserPolicy("bucket")
	if err != nil {
		t.Fatal(err)
	}
	var p policyDocument
	if err := json.Unmarshal(doc, &p); err != nil || len(p.Statement) != 4 {
		t.Fatalf("user policy: %v\n%s", err, doc)
	}
}

// TestOperatorPolicyLetsAFreshAccountCreateServiceLinkedRoles: the first network load balancer and
// the first auto scaling group of an account make AWS create their service-linked roles with the
// caller's permissions, so the operator needs iam:CreateServiceLinkedRole for those two services and
// no other.
func TestOperatorPolicyLetsAFreshAccountCreateServiceLinkedRoles(t *testing.T) {
	doc, err := UserPolicy("bucket")
	if err != nil {
		t.Fatal(err)
	}
	var p policyDocument
	if err := json.Unmarshal(doc, &p); err != nil {
		t.Fatal(err)
	}
	var found []statement
	for _, st := range p.Statement {
		if slices.Contains(st.Action, "iam:CreateServiceLinkedRole") {
			found = append(found, st)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d statements grant iam:CreateServiceLinkedRole, want 1:\n%s", len(found), doc)
	}
	st := found[0]
	services := st.Condition["StringEquals"]["iam:AWSServiceName"]
	slices.Sort(services)
	if !slices.Equal(services, []string{"autoscaling.amazonaws.com", "elasticloadbalancing.amazonaws.com"}) || len(st.Action) != 1 {
		t.Errorf("iam:CreateServiceLinkedRole is not limited to the load balancing and auto scaling services:\n%s", doc)
	}
	if !slices.Equal(st.Resource, stringList{"arn:aws:iam::*:role/aws-service-role/*"}) {
		t.Errorf("iam:CreateServiceLinkedRole on %v, want the service-linked roles only", st.Resource)
	}
}

// TestOperatorPolicyFitsAManagedPolicy: AWS limits a managed policy to 6,144 characters without white
// space (an inline user policy to 2,048, too small for it), so the published policy must fit.
func TestOperatorPolicyFitsAManagedPolicy(t *testing.T) {
	doc, err := UserPolicy("a-bucket-name-of-the-longest-length-aws-allows-is-sixty-three-ch")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range string(doc) {
		if r != ' ' && r != '\n' && r != '\t' {
			n++
		}
	}
	if n > 6144 {
		t.Errorf("the operator policy has %d characters without white space; a managed policy allows 6,144", n)
	}
}
