package aws

import (
	"errors"
	"strings"
	"testing"

	"github.com/kubedirect/kubedirect/provision/validate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestValidateSaysWhenNodePortAccessAdmitsNobody: without access.nodePort the proof cannot reach any
// node, and validate says what to add instead of timing out on every row.
func TestValidateSaysWhenNodePortAccessAdmitsNobody(t *testing.T) {
	e := newEnv(t)
	e.c.Spec.AWS.Access.NodePort = nil
	a := e.p.AsProvisionProvider("").(*clusterProvider)
	err := a.TuneValidator(e.c, &validate.Validator{})
	if !errors.Is(err, ErrNoNodePortAccess) || !strings.Contains(err.Error(), "ADDRESS/32 to spec.aws.access.nodePort") {
		t.Fatalf("got %v", err)
	}
	e.c.Spec.AWS.Access.NodePort = []string{"203.0.113.7/32"}
	v := &validate.Validator{}
	if err := a.TuneValidator(e.c, v); err != nil {
		t.Fatal(err)
	}
	// The baseline listens where the security group admits the operator: inside the NodePort range.
	if v.BaselineHTTPPort != 32766 || v.BaselineUDPPort != 32767 || !strings.Contains(v.ReachHint, "203.0.113.7/32") {
		t.Errorf("validator %+v", v)
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationPublicIPv4: "198.51.100.4"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.20.0.10"}}}}
	if got := v.Address(n); got != "198.51.100.4" {
		t.Errorf("outside client calls %s, want the public address", got)
	}
}
