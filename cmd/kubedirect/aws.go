package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kubedirect/kubedirect/internal/progress"
	awsprov "github.com/kubedirect/kubedirect/provision/aws"
	"github.com/kubedirect/kubedirect/provision/install"
	"github.com/kubedirect/kubedirect/provision/spec"
	"go.yaml.in/yaml/v3"
)

// kubeconfigTimeout bounds how long create waits for the control plane to publish its kubeconfig.
const kubeconfigTimeout = 25 * time.Minute

// planAWS prints the AWS resources create would make. It makes no AWS call and needs no credentials.
func planAWS(_ context.Context, g *globals, c *spec.Cluster) error {
	plan, err := awsprov.NewProvider(awsprov.WithLogger(g.logger())).PlanOffline(c)
	if err != nil {
		return fmt.Errorf("plan cluster %q: %w", c.Metadata.Name, err)
	}
	return plan.Write(g.stdout)
}

// createAWS creates or resumes the cluster on AWS: the infrastructure, then it waits for the control
// plane's admin kubeconfig in the state store and writes it locally.
func createAWS(ctx context.Context, g *globals, c *spec.Cluster, o *createOptions) error {
	p := g.printer()
	prov := awsprov.NewProvider(awsprov.WithLogger(g.logger()))
	p.Println(fmt.Sprintf("Creating cluster %q on aws (region %s, Kubernetes %s) ...", c.Metadata.Name, c.Spec.AWS.Region, c.Spec.KubernetesVersion))
	var plan *awsprov.Plan
	err := p.Step("Creating AWS resources (VPC, security groups, IAM, load balancer, node groups)", func() error {
		var err error
		plan, err = prov.Create(ctx, c)
		return err
	})
	if plan != nil {
		p.Println(plan.Summary())
		if g.verbose {
			_ = plan.Write(g.stderr)
		}
	}
	if err != nil {
		return fmt.Errorf("create cluster %q: %w\nwhat was made stays: run create again to resume, or delete cluster -f %s to remove it", c.Metadata.Name, err, o.file)
	}
	var kubeconfig []byte
	err = p.Step("Waiting for the control plane to publish its kubeconfig", func() error {
		var err error
		kubeconfig, err = prov.Kubeconfig(ctx, c, kubeconfigTimeout)
		return err
	})
	if err != nil {
		return fmt.Errorf("create cluster %q: %w (the nodes log their bootstrap to /var/log/kubedirect-bootstrap.log)", c.Metadata.Name, err)
	}
	path, err := writeAWSKubeconfig(c.Metadata.Name, kubeconfig)
	if err != nil {
		return fmt.Errorf("create cluster %q: %w", c.Metadata.Name, err)
	}
	if err := installAWSDataplane(ctx, g, p, c, kubeconfig); err != nil {
		return fmt.Errorf("create cluster %q: %w", c.Metadata.Name, err)
	}
	p.Println(fmt.Sprintf("Cluster %q is up on aws; kubeconfig written to %s (export KUBECONFIG=%s).", c.Metadata.Name, path, path))
	return nil
}

// installAWSDataplane installs the chart with Helm through the API's load balancer and waits for the
// agent on every node. It needs a published image (spec.dataplane.image): pushing the CLI's own image
// to a private ECR repository is not built yet, so without one the nodes stay NotReady (no CNI).
func installAWSDataplane(ctx context.Context, g *globals, p *progress.Printer, c *spec.Cluster, kubeconfig []byte) error {
	if c.Spec.Dataplane.Image == "" {
		p.Println("Not installing the kubedirect dataplane: on aws it needs spec.dataplane.image (a published image); nodes stay NotReady until it runs.")
		return nil
	}
	var kc struct {
		Clusters []struct {
			Cluster struct {
				Server string `yaml:"server"`
			} `yaml:"cluster"`
		} `yaml:"clusters"`
	}
	if err := yaml.Unmarshal(kubeconfig, &kc); err != nil {
		return fmt.Errorf("read the API server address from the kubeconfig: %w", err)
	}
	if len(kc.Clusters) == 0 {
		return errors.New("read the API server address from the kubeconfig: it names no cluster")
	}
	host, port, err := install.APIServerHostFromKubeconfigServer(kc.Clusters[0].Cluster.Server)
	if err != nil {
		return err
	}
	ch, err := install.LoadChart()
	if err != nil {
		return err
	}
	vals := install.Values(c, install.ValuesOptions{Image: install.PublishedImage(c.Spec.Dataplane.Image), APIServerHost: host, APIServerPort: port})
	err = p.Step("Installing the kubedirect dataplane (Helm)", func() error {
		_, err := install.Helm(ctx, ch, vals, install.HelmOptions{Kubeconfig: kubeconfig, Log: g.logger()})
		return err
	})
	if err != nil {
		return err
	}
	return p.Step("Waiting for the agent on every node", func() error {
		return install.WaitAgents(ctx, kubeconfig, install.DefaultTimeout)
	})
}

// writeAWSKubeconfig saves the admin kubeconfig as ~/.kube/kubedirect-<name>.kubeconfig, readable by
// the user only.
func writeAWSKubeconfig(name string, data []byte) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	dir := filepath.Join(home, ".kube")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	path := filepath.Join(dir, "kubedirect-"+name+".kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("write kubeconfig: %w", err)
	}
	return path, nil
}

// deleteAWS removes every resource tagged with the cluster's name, and its state-store files.
func deleteAWS(ctx context.Context, g *globals, c *spec.Cluster) error {
	if c.Spec.AWS == nil {
		return fmt.Errorf("delete cluster %q: an aws cluster is deleted with -f SPEC (its region and state store are needed)", c.Metadata.Name)
	}
	p := g.printer()
	prov := awsprov.NewProvider(awsprov.WithLogger(g.logger()))
	var report *awsprov.DeleteReport
	err := p.Step(fmt.Sprintf("Deleting cluster %q on aws (region %s)", c.Metadata.Name, c.Spec.AWS.Region), func() error {
		var err error
		report, err = prov.Delete(ctx, c)
		return err
	})
	if report == nil {
		return fmt.Errorf("delete cluster %q: %w", c.Metadata.Name, err)
	}
	p.Println(fmt.Sprintf("Deleted %d resources.", len(report.Deleted)))
	if len(report.Failed) > 0 {
		return fmt.Errorf("delete cluster %q: %d could not be removed (run delete again):\n%w", c.Metadata.Name, len(report.Failed), errors.Join(report.Failed...))
	}
	return nil
}
