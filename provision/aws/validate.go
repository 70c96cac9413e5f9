package aws

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kubedirect/kubedirect/provision/spec"
	"github.com/kubedirect/kubedirect/provision/validate"
	corev1 "k8s.io/api/core/v1"
)

// AnnotationPublicIPv4 is the Node annotation a node sets to its public IPv4 address (from IMDS):
// without a cloud controller manager the Node has no ExternalIP, and the operator's machine, where
// validate's client runs, reaches the nodes only at their public addresses.
const AnnotationPublicIPv4 = "kubedirect.io/public-ipv4"

// ErrNoNodePortAccess is returned when spec.aws.access.nodePort admits nobody: validation's client
// could not reach any NodePort.
var ErrNoNodePortAccess = errors.New("spec.aws.access.nodePort admits no address")

// TuneValidator points the validation's outside client (this machine) at the nodes' public addresses
// and puts the host-network baseline on the two last NodePorts, which the nodes' security group admits
// from access.nodePort (the kind defaults, 29080/29081, are closed on AWS).
func (a *clusterProvider) TuneValidator(c *spec.Cluster, v *validate.Validator) error {
	access := c.Spec.AWS.Access.NodePort
	if len(access) == 0 {
		return fmt.Errorf("%w: the source-IP proof calls every node's NodePorts from this machine; add this machine's public address (as seen by AWS) as ADDRESS/32 to spec.aws.access.nodePort and run create again", ErrNoNodePortAccess)
	}
	_, last, err := spec.ParsePortRange(c.Spec.Networking.NodePortRange)
	if err != nil {
		return err
	}
	v.BaselineHTTPPort, v.BaselineUDPPort = int(last)-1, int(last)
	v.Address = PublicAddress
	v.ReachHint = fmt.Sprintf("spec.aws.access.nodePort (%s) must admit this machine's public address; the nodes' security group drops anything else", strings.Join(access, ", "))
	return nil
}

// PublicAddress is the address of a node from outside AWS: its ExternalIP, else the public IPv4 its
// bootstrap recorded, else its InternalIP.
func PublicAddress(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeExternalIP && !strings.Contains(a.Address, ":") {
			return a.Address
		}
	}
	if ip := n.Annotations[AnnotationPublicIPv4]; ip != "" {
		return ip
	}
	return validate.NodeIP(n)
}
