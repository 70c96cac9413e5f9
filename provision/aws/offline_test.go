package aws

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kubedirect/kubedirect/internal/testutil"
	"github.com/kubedirect/kubedirect/provision/spec"
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
	out := plan.String()
	testutil.WantContains(t, "plan", out, "= VPC (existing) vpc-0123456789abcdef0", "vpc: vpc-0123456789abcdef0")
	if strings.Contains(out, "+ VPC ") || strings.Contains(out, "+ InternetGateway") {
		t.Error("plan creates a VPC or internet gateway although the spec names an existing VPC")
	}
}

// TestThreeControlPlanesArePlanned: count 3 is a stacked-etcd control plane of three nodes in one
// auto scaling group, registered with both API load balancers; an even count is refused.
func TestThreeControlPlanesArePlanned(t *testing.T) {
	b0, err := os.ReadFile("../../examples/aws.yaml")
	if err != nil {
		t.Fatal(err)
	}
	three := strings.Replace(string(b0), "role: control-plane\n      count: 1", "role: control-plane\n      count: 3", 1)
	c, err := spec.Load([]byte(three))
	if err != nil || c.Spec.NodeGroups[0].Count != 3 {
		t.Fatalf("the spec refuses three control planes: %v", err)
	}
	plan, err := NewProvider().PlanOffline(c)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WantContains(t, "plan", plan.String(),
		"# Control plane: 3 nodes, stacked etcd (one member on each), tolerates 1 down",
		"# Join: the first control plane to take control-plane/init-lock runs kubeadm init; the other 2, and any the group replaces later, kubeadm join --control-plane",
		"+ AutoScalingGroup kubedirect-prod-control-plane\n    launchTemplate: (lt/control-plane, known after create) $Default\n    size: min 3 max 3 desired 3",
		"targetGroup: (tg, known after create)\n    targetGroup: (tg-internal, known after create)",
	)
	c.Spec.NodeGroups[0].Count = 2
	if _, err := NewProvider().PlanOffline(c); err == nil || !strings.Contains(err.Error(), "odd number") {
		t.Errorf("two control planes: %v, want a refusal asking for an odd number", err)
	}
}
