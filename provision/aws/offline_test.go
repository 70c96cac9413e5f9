package aws

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestDryRunReachesNoEndpoint points every AWS endpoint the SDK could use, the instance metadata
// service included, at a loopback server and checks that an offline plan sends it nothing.
func TestDryRunReachesNoEndpoint(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusForbidden)
	}))
	defer srv.Close()
	t.Setenv("AWS_ENDPOINT_URL", srv.URL)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.URL)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_PROFILE", "kubedirect-test-no-such-profile")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	if _, err := NewProvider().PlanOffline(loadExample(t)); err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("offline plan sent %d requests", n)
	}
}

func TestDryRunWithExistingVPCUsesIt(t *testing.T) {
	c := loadExample(t)
	c.Spec.AWS.VPCID = "vpc-0123456789abcdef0"
	plan, err := NewProvider().PlanOffline(c)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	_ = plan.Write(&b)
	for _, want := range []string{"= VPC (existing) vpc-0123456789abcdef0", "vpc: vpc-0123456789abcdef0"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("plan lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "+ VPC ") || strings.Contains(b.String(), "+ InternetGateway") {
		t.Error("plan creates a VPC or internet gateway although the spec names an existing VPC")
	}
}
