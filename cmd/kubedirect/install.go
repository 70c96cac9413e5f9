package main

import (
	"context"
	"fmt"
	"os"
	"runtime"

	"github.com/kubedirect/kubedirect/internal/progress"
	"github.com/kubedirect/kubedirect/provision/install"
	"github.com/kubedirect/kubedirect/provision/kind"
	"github.com/kubedirect/kubedirect/provision/spec"
)

// nodeArch is the architecture of the kind nodes: Docker runs them on this machine's architecture.
var nodeArch = runtime.GOARCH

// printDataplane prints, for --dry-run, the manifests the dataplane install would apply. Values known
// only once the nodes exist are shown as what they will be derived from: on kind the API server is the
// bootstrap control-plane container (its IP is used at install time).
func printDataplane(g *globals, c *spec.Cluster) error {
	o := install.ValuesOptions{APIServerPort: install.DefaultAPIServerPort}
	switch {
	case c.Spec.Dataplane.Image != "":
		o.Image = install.PublishedImage(c.Spec.Dataplane.Image)
	default:
		o.Image = install.Image{Repository: install.SelfImageRepository, Tag: "bin-<sha256 of the node binary>", PullPolicy: "Never"}
		if self, err := os.Executable(); err == nil && install.CheckNodeBinary(self, nodeArch) == nil && os.Getenv(install.NodeBinaryEnv) == "" {
			if b, err := os.ReadFile(self); err == nil {
				o.Image.Tag = install.TagFor(b)
			}
		}
	}
	if c.Spec.Provider == spec.ProviderKind {
		// At install time this becomes the container's IP (see install.KindAPIServerAddress).
		o.APIServerHost = c.Metadata.Name + "-control-plane"
	} else {
		o.APIServerHost = "<api server address>"
	}
	out, err := install.Render(c, o)
	if err != nil {
		return fmt.Errorf("render dataplane chart: %w", err)
	}
	fmt.Fprintf(g.stdout, "# kubedirect dataplane: Helm release %q in namespace %s, image %s\n%s",
		install.ReleaseName, install.Namespace, o.Image.Ref(), out)
	return nil
}

// installDataplane loads kubedirect's own image into the nodes and installs the chart with Helm (or
// upgrades it), waits for the agent on every node and, with --wait, validates the cluster.
func installDataplane(ctx context.Context, g *globals, p *progress.Printer, provider *kind.Provider, c *spec.Cluster, o *createOptions) error {
	name := c.Metadata.Name
	img := install.PublishedImage(c.Spec.Dataplane.Image)
	if c.Spec.Dataplane.Image == "" {
		var self *install.SelfImage
		err := p.Step("Building the kubedirect image", func() error {
			bin, from, err := install.NodeBinary(ctx, nodeArch)
			if err != nil {
				return err
			}
			g.logger().Debug("node binary", "from", from, "bytes", len(bin))
			self, err = install.BuildSelfImage(bin, nodeArch)
			return err
		})
		if err != nil {
			return err
		}
		img = self.Image
		err = p.Step(fmt.Sprintf("Loading image %s into the nodes", img.Ref()), func() error {
			loaded, err := install.LoadIntoKind(ctx, provider.Kind(), name, self)
			g.logger().Debug("image loaded", "nodes", loaded)
			return err
		})
		if err != nil {
			return err
		}
	}
	host, port, err := install.KindAPIServerAddress(provider.Kind(), name)
	if err != nil {
		return err
	}
	kubeconfig, err := provider.Kubeconfig(ctx, name, false)
	if err != nil {
		return fmt.Errorf("kubeconfig of %q: %w", name, err)
	}
	ch, err := install.LoadChart()
	if err != nil {
		return err
	}
	vals := install.Values(c, install.ValuesOptions{Image: img, APIServerHost: host, APIServerPort: port})
	var act install.Action
	err = p.Step("Installing the kubedirect dataplane (Helm)", func() error {
		act, err = install.Helm(ctx, ch, vals, install.HelmOptions{Kubeconfig: []byte(kubeconfig), Log: g.logger()})
		return err
	})
	if err != nil {
		return err
	}
	g.logger().Debug("helm release", "release", install.ReleaseName, "action", act)
	if err := p.Step("Waiting for the agent on every node", func() error {
		return install.WaitAgents(ctx, []byte(kubeconfig), install.DefaultTimeout)
	}); err != nil {
		return err
	}
	if o.wait > 0 {
		return validateKind(ctx, g, c, o.wait, "table")
	}
	return nil
}
