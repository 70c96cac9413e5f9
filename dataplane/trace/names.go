package trace

import (
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Name fills in what the maps do not know, from the API server's objects: the node traced, the
// Service of the frontend (namespace/name) and the name of the backend's node (this node when the
// backend is local).
func (r *Result) Name(node string, svcs []corev1.Service, nodes []corev1.Node) {
	r.Node = node
	if f := r.Frontend; f != nil {
		for i := range svcs {
			if serves(&svcs[i], f) {
				f.Service = svcs[i].Namespace + "/" + svcs[i].Name
				break
			}
		}
	}
	switch {
	case r.BackendNodeIP != "":
		for _, n := range nodes {
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP && a.Address == r.BackendNodeIP {
					r.BackendNodeName = n.Name
				}
			}
		}
	case r.Backend != "":
		r.BackendNodeName = node
	}
}

// serves reports whether s has the frontend f: a NodePort for "*", else a port on f's address.
func serves(s *corev1.Service, f *Frontend) bool {
	for _, p := range s.Spec.Ports {
		if !strings.EqualFold(string(p.Protocol), f.Proto) {
			continue
		}
		if f.Addr == "*" {
			if p.NodePort == int32(f.Port) {
				return true
			}
			continue
		}
		if p.Port != int32(f.Port) {
			continue
		}
		addrs := append([]string{s.Spec.ClusterIP}, s.Spec.ExternalIPs...)
		for _, in := range s.Status.LoadBalancer.Ingress {
			addrs = append(addrs, in.IP)
		}
		for _, a := range addrs {
			if ip, err := netip.ParseAddr(a); err == nil && ip.String() == f.Addr {
				return true
			}
		}
	}
	return false
}
