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
	if err := json.Unmarshal(doc, &p); err != nil || len(p.Statement) != 3 {
		t.Fatalf("user policy: %v\n%s", err, doc)
	}
}
