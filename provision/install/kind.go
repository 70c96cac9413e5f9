package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
)

// LoadIntoKind loads the self-image into every node of the kind cluster, skipping nodes that already
// have it (same reference and image ID). It returns the names of the nodes it loaded the image into.
func LoadIntoKind(ctx context.Context, kp *cluster.Provider, clusterName string, img *SelfImage) ([]string, error) {
	all, err := kp.ListInternalNodes(clusterName)
	if err != nil {
		return nil, fmt.Errorf("list nodes of kind cluster %q: %w", clusterName, err)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("kind cluster %q has no nodes", clusterName)
	}
	var archive bytes.Buffer
	if err := img.WriteArchive(&archive); err != nil {
		return nil, err
	}
	var (
		mu     sync.Mutex
		loaded []string
		errs   []error
		wg     sync.WaitGroup
	)
	for _, n := range all {
		if id, err := nodeutils.ImageID(n, img.Image.Ref()); err == nil && id == img.ID {
			continue
		}
		wg.Add(1)
		go func(n nodes.Node) {
			defer wg.Done()
			if err := ctx.Err(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			err := nodeutils.LoadImageArchive(n, bytes.NewReader(archive.Bytes()))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("load %s into node %s: %w", img.Image.Ref(), n.String(), err))
				return
			}
			loaded = append(loaded, n.String())
		}(n)
	}
	wg.Wait()
	return loaded, errors.Join(errs...)
}

// KindAPIServerAddress returns the address the agents reach the API server at from inside the kind
// network: the IP of the bootstrap control-plane node and the API server's port there (the port of the
// cluster's internal kubeconfig). An IP is used, not the container's name, because the agents run with
// dnsPolicy ClusterFirstWithHostNet and cluster DNS is not served before they are; and a control-plane
// node rather than the load balancer of an HA control plane, because kubeadm puts each control-plane
// node's IP in the serving certificate but not the load balancer's.
func KindAPIServerAddress(kp *cluster.Provider, clusterName string) (string, int, error) {
	kc, err := kp.KubeConfig(clusterName, true)
	if err != nil {
		return "", 0, fmt.Errorf("internal kubeconfig of %q: %w", clusterName, err)
	}
	server, err := kubeconfigServer([]byte(kc))
	if err != nil {
		return "", 0, err
	}
	_, port, err := APIServerHostFromKubeconfigServer(server)
	if err != nil {
		return "", 0, err
	}
	all, err := kp.ListNodes(clusterName)
	if err != nil {
		return "", 0, fmt.Errorf("list nodes of kind cluster %q: %w", clusterName, err)
	}
	cp, err := nodeutils.BootstrapControlPlaneNode(all)
	if err != nil {
		return "", 0, fmt.Errorf("control-plane node of %q: %w", clusterName, err)
	}
	ip, _, err := cp.IP()
	if err != nil || ip == "" {
		return "", 0, fmt.Errorf("ip of node %s: %v", cp.String(), err)
	}
	return ip, port, nil
}

// kubeconfigServer returns the server URL of a kubeconfig's current context.
func kubeconfigServer(kubeconfig []byte) (string, error) {
	g, err := NewRESTClientGetter(kubeconfig, Namespace)
	if err != nil {
		return "", err
	}
	rc, err := g.ToRESTConfig()
	if err != nil {
		return "", err
	}
	return rc.Host, nil
}
