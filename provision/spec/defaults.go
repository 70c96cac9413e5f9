package spec

// Defaults of the spec's optional fields.
const (
	DefaultKubernetesVersion   = "v1.34.4"
	DefaultPodCIDR             = "10.244.0.0/16"
	DefaultServiceCIDR         = "10.96.0.0/16"
	DefaultNodePortRange       = "30000-32767"
	DefaultLogLevel            = "info"
	DefaultServicesMapSize     = 65536
	DefaultBackendsMapSize     = 65536
	DefaultConntrackMapSize    = 262144
	DefaultMachineType         = "t3.medium"
	DefaultAWSNetworkCIDR      = "172.20.0.0/16"
	DefaultKindNodeImageRepo   = "kindest/node"
	DefaultExternalServiceMode = ModeTunnel
	DefaultEncapsulation       = EncapsulationVXLAN
	DefaultXDP                 = XDPOff
)

// SetDefaults fills in every optional field that is unset. It never overrides a value the user gave.
func (c *Cluster) SetDefaults() {
	s := &c.Spec
	setString(&s.KubernetesVersion, DefaultKubernetesVersion)
	if len(s.NodeGroups) == 0 {
		s.NodeGroups = []NodeGroup{
			{Name: "control-plane", Role: RoleControlPlane, Count: 1},
			{Name: "workers", Role: RoleWorker, Count: 2},
		}
	}
	for i := range s.NodeGroups {
		g := &s.NodeGroups[i]
		if g.Role == "" {
			g.Role = RoleWorker
		}
		if s.Provider == ProviderAWS {
			setString(&g.MachineType, DefaultMachineType)
		}
	}
	n := &s.Networking
	setString(&n.PodCIDR, DefaultPodCIDR)
	setString(&n.ServiceCIDR, DefaultServiceCIDR)
	setString(&n.NodePortRange, DefaultNodePortRange)
	if n.Encapsulation == "" {
		n.Encapsulation = DefaultEncapsulation
	}
	if n.ExternalServiceMode == "" {
		n.ExternalServiceMode = DefaultExternalServiceMode
	}
	d := &s.Dataplane
	setString(&d.LogLevel, DefaultLogLevel)
	setInt(&d.MapSizes.Services, DefaultServicesMapSize)
	setInt(&d.MapSizes.Backends, DefaultBackendsMapSize)
	setInt(&d.MapSizes.Conntrack, DefaultConntrackMapSize)
	if d.XDP == "" {
		d.XDP = DefaultXDP
	}
	if s.Provider == ProviderKind && s.Kind == nil {
		s.Kind = &KindSpec{}
	}
	if s.Kind != nil {
		setString(&s.Kind.NodeImage, DefaultKindNodeImageRepo+":"+s.KubernetesVersion)
	}
	if a := s.AWS; a != nil {
		if len(a.Zones) == 0 && a.Region != "" {
			a.Zones = []string{a.Region + "a"}
		}
		if a.VPCID == "" {
			setString(&a.NetworkCIDR, DefaultAWSNetworkCIDR)
		}
		// left out: the world; an explicit [] is refused by Validate (it would admit no one)
		if a.Access.API == nil {
			a.Access.API = []string{"0.0.0.0/0"}
		}
		// [] and left out both mean none: one form, so a spec written out loads back the same
		if len(a.Access.SSH) == 0 {
			a.Access.SSH = nil
		}
		if len(a.Access.NodePort) == 0 {
			a.Access.NodePort = nil
		}
	}
}

func setString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}
