package spec

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	versionPattern = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)
	regionPattern  = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$`)
	vpcIDPattern   = regexp.MustCompile(`^vpc-[0-9a-f]{8,17}$`)
	bucketPattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

// maxNameLength keeps names that providers derive from the cluster name (node containers, AWS resource
// names of at most 64 characters) within their limits.
const maxNameLength = 40

// Validate returns every problem of a defaulted spec, each with its field path.
func (c *Cluster) Validate() field.ErrorList {
	var errs field.ErrorList
	if c.APIVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), c.APIVersion, []string{APIVersion}))
	}
	if c.Kind != Kind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), c.Kind, []string{Kind}))
	}
	errs = append(errs, validateName(field.NewPath("metadata", "name"), c.Metadata.Name, maxNameLength)...)
	return append(errs, c.Spec.validate(field.NewPath("spec"))...)
}

func (s *ClusterSpec) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.Provider {
	case ProviderKind:
		if s.AWS != nil {
			errs = append(errs, field.Forbidden(p.Child("aws"), "only allowed with provider aws"))
		}
	case ProviderAWS:
		if s.AWS == nil {
			errs = append(errs, field.Required(p.Child("aws"), "required with provider aws"))
		}
		if s.Kind != nil {
			errs = append(errs, field.Forbidden(p.Child("kind"), "only allowed with provider kind"))
		}
	case "":
		errs = append(errs, field.Required(p.Child("provider"), "one of kind, aws"))
	default:
		errs = append(errs, field.NotSupported(p.Child("provider"), s.Provider, []Provider{ProviderKind, ProviderAWS}))
	}
	if !versionPattern.MatchString(s.KubernetesVersion) {
		errs = append(errs, field.Invalid(p.Child("kubernetesVersion"), s.KubernetesVersion, "must look like v1.34.4"))
	}
	errs = append(errs, s.validateNodeGroups(p.Child("nodeGroups"))...)
	errs = append(errs, s.Networking.validate(p.Child("networking"))...)
	errs = append(errs, s.Dataplane.validate(p.Child("dataplane"))...)
	if s.AWS != nil {
		errs = append(errs, s.AWS.validate(p.Child("aws"), s.Networking)...)
	}
	return errs
}

func (s *ClusterSpec) validateNodeGroups(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	controlPlanes := 0
	for i, g := range s.NodeGroups {
		gp := p.Index(i)
		errs = append(errs, validateName(gp.Child("name"), g.Name, 63)...)
		if seen[g.Name] {
			errs = append(errs, field.Duplicate(gp.Child("name"), g.Name))
		}
		seen[g.Name] = true
		switch g.Role {
		case RoleControlPlane:
			controlPlanes++
		case RoleWorker:
		default:
			errs = append(errs, field.NotSupported(gp.Child("role"), g.Role, []NodeRole{RoleControlPlane, RoleWorker}))
		}
		if g.Count < 1 {
			errs = append(errs, field.Invalid(gp.Child("count"), g.Count, "must be at least 1"))
		}
		if g.MachineType != "" && s.Provider != ProviderAWS {
			errs = append(errs, field.Forbidden(gp.Child("machineType"), "only allowed with provider aws"))
		}
	}
	if controlPlanes != 1 {
		errs = append(errs, field.Invalid(p, controlPlanes, "needs exactly one group with role control-plane"))
	}
	return errs
}

func (n *Networking) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	pod, podErrs := parseIPv4CIDR(p.Child("podCIDR"), n.PodCIDR)
	svc, svcErrs := parseIPv4CIDR(p.Child("serviceCIDR"), n.ServiceCIDR)
	errs = append(append(errs, podErrs...), svcErrs...)
	if len(podErrs) == 0 && pod.Bits() > 24 {
		errs = append(errs, field.Invalid(p.Child("podCIDR"), n.PodCIDR, "must be /24 or larger: every node gets a /24"))
	}
	if len(svcErrs) == 0 && svc.Bits() < 12 {
		errs = append(errs, field.Invalid(p.Child("serviceCIDR"), n.ServiceCIDR, "must be /12 or smaller, as kube-apiserver requires"))
	}
	if len(podErrs) == 0 && len(svcErrs) == 0 && pod.Overlaps(svc) {
		errs = append(errs, field.Invalid(p.Child("serviceCIDR"), n.ServiceCIDR, fmt.Sprintf("overlaps podCIDR %s", n.PodCIDR)))
	}
	if n.Encapsulation != EncapsulationVXLAN {
		errs = append(errs, field.NotSupported(p.Child("encapsulation"), n.Encapsulation, []Encapsulation{EncapsulationVXLAN}))
	}
	if !n.ExternalServiceMode.Valid() {
		errs = append(errs, field.NotSupported(p.Child("externalServiceMode"), n.ExternalServiceMode, ExternalServiceModes))
	}
	if _, _, err := ParsePortRange(n.NodePortRange); err != nil {
		errs = append(errs, field.Invalid(p.Child("nodePortRange"), n.NodePortRange, err.Error()))
	}
	return errs
}

// ParsePortRange parses "FIRST-LAST" with 1 <= FIRST <= LAST <= 65535.
func ParsePortRange(s string) (first, last uint16, err error) {
	a, b, ok := strings.Cut(s, "-")
	lo, errA := strconv.ParseUint(a, 10, 16)
	hi, errB := strconv.ParseUint(b, 10, 16)
	if !ok || errA != nil || errB != nil || lo == 0 || lo > hi {
		return 0, 0, fmt.Errorf("must be FIRST-LAST with 1 <= FIRST <= LAST <= 65535")
	}
	return uint16(lo), uint16(hi), nil
}

func (d *Dataplane) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch d.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, field.NotSupported(p.Child("logLevel"), d.LogLevel, []string{"debug", "info", "warn", "error"}))
	}
	if !d.XDP.Valid() {
		errs = append(errs, field.NotSupported(p.Child("xdp"), d.XDP, XDPModes))
	}
	mp := p.Child("mapSizes")
	for _, m := range []struct {
		name     string
		val, max int
	}{
		{"services", d.MapSizes.Services, 1 << 20},
		{"backends", d.MapSizes.Backends, 1 << 22},
		{"conntrack", d.MapSizes.Conntrack, 1 << 24},
	} {
		if m.val < 16 || m.val > m.max {
			errs = append(errs, field.Invalid(mp.Child(m.name), m.val, fmt.Sprintf("must be between 16 and %d", m.max)))
		}
	}
	return errs
}

func (a *AWSSpec) validate(p *field.Path, n Networking) field.ErrorList {
	var errs field.ErrorList
	if !regionPattern.MatchString(a.Region) {
		errs = append(errs, field.Invalid(p.Child("region"), a.Region, "must be an AWS region such as eu-west-1"))
	}
	seen := map[string]bool{}
	for i, z := range a.Zones {
		zp := p.Child("zones").Index(i)
		suffix, ok := strings.CutPrefix(z, a.Region)
		if !ok || len(suffix) != 1 || suffix[0] < 'a' || suffix[0] > 'z' {
			errs = append(errs, field.Invalid(zp, z, fmt.Sprintf("must be a zone of region %s, such as %sa", a.Region, a.Region)))
		}
		if seen[z] {
			errs = append(errs, field.Duplicate(zp, z))
		}
		seen[z] = true
	}
	if _, _, err := ParseStateStore(a.StateStore); err != nil {
		errs = append(errs, field.Invalid(p.Child("stateStore"), a.StateStore, err.Error()))
	}
	if a.VPCID != "" && !vpcIDPattern.MatchString(a.VPCID) {
		errs = append(errs, field.Invalid(p.Child("vpcID"), a.VPCID, "must look like vpc-0123456789abcdef0"))
	}
	if a.NetworkCIDR != "" {
		np := p.Child("networkCIDR")
		vpc, cidrErrs := parseIPv4CIDR(np, a.NetworkCIDR)
		errs = append(errs, cidrErrs...)
		if len(cidrErrs) == 0 {
			if vpc.Bits() < 16 || vpc.Bits() > 24 {
				errs = append(errs, field.Invalid(np, a.NetworkCIDR, "must be between /16 and /24, as AWS requires"))
			}
			for _, other := range []string{n.PodCIDR, n.ServiceCIDR} {
				if o, err := netip.ParsePrefix(other); err == nil && o.Overlaps(vpc) {
					errs = append(errs, field.Invalid(np, a.NetworkCIDR, fmt.Sprintf("overlaps %s", other)))
				}
			}
		}
	}
	ap := p.Child("access")
	if a.Access.API != nil && len(a.Access.API) == 0 {
		errs = append(errs, field.Required(ap.Child("api"),
			"an empty list admits no one to the API, which create cluster must reach; leave it out for [0.0.0.0/0] or list your CIDRs"))
	}
	for name, list := range map[string][]string{"api": a.Access.API, "ssh": a.Access.SSH, "nodePort": a.Access.NodePort} {
		for i, cidr := range list {
			_, cidrErrs := parseIPv4CIDR(ap.Child(name).Index(i), cidr)
			errs = append(errs, cidrErrs...)
		}
	}
	return errs
}

// ParseStateStore splits s3://bucket[/prefix] into its bucket and prefix (without slashes at its ends).
func ParseStateStore(s string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("must be s3://bucket[/prefix]")
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if !bucketPattern.MatchString(bucket) || strings.Contains(bucket, "..") {
		return "", "", fmt.Errorf("must be s3://bucket[/prefix] with a valid S3 bucket name")
	}
	return bucket, strings.Trim(prefix, "/"), nil
}

func parseIPv4CIDR(p *field.Path, s string) (netip.Prefix, field.ErrorList) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil || !pfx.Addr().Is4() {
		return pfx, field.ErrorList{field.Invalid(p, s, "must be an IPv4 CIDR such as 10.244.0.0/16")}
	}
	if pfx.Masked() != pfx {
		return pfx, field.ErrorList{field.Invalid(p, s, fmt.Sprintf("has host bits set; did you mean %s?", pfx.Masked()))}
	}
	return pfx, nil
}

func validateName(p *field.Path, name string, max int) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(p, "a DNS-1123 label")}
	}
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(name) {
		errs = append(errs, field.Invalid(p, name, msg))
	}
	if len(name) > max {
		errs = append(errs, field.TooLong(p, name, max))
	}
	return errs
}
