package install

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/storage/driver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// DefaultTimeout bounds the wait for the agent DaemonSet.
const DefaultTimeout = 5 * time.Minute

// HelmOptions tune Helm.
type HelmOptions struct {
	// Kubeconfig is the admin kubeconfig of the cluster (the form the CLI reaches the API with).
	Kubeconfig []byte
	// Timeout bounds Helm's apply. Default: DefaultTimeout.
	Timeout time.Duration
	// Log receives Helm's debug output. Default: discarded.
	Log *slog.Logger
	// Release is the release's name. Default: ReleaseName.
	Release string
}

// Action tells what Helm did.
type Action string

// Helm actions.
const (
	Installed Action = "installed"
	Upgraded  Action = "upgraded"
)

// Helm installs the chart as the release (ReleaseName unless o says) in Namespace, or upgrades the release when it exists (so
// running create again on an existing cluster upgrades). It does not wait for the agents: see WaitAgents.
func Helm(ctx context.Context, ch *chart.Chart, vals map[string]any, o HelmOptions) (Action, error) {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Release == "" {
		o.Release = ReleaseName
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	getter, err := NewRESTClientGetter(o.Kubeconfig, Namespace)
	if err != nil {
		return "", err
	}
	cfg := new(action.Configuration)
	if err := cfg.Init(getter, Namespace, "secret", func(format string, v ...any) {
		log.Debug(fmt.Sprintf(format, v...), "component", "helm")
	}); err != nil {
		return "", fmt.Errorf("init helm: %w", err)
	}
	hist := action.NewHistory(cfg)
	hist.Max = 1
	var act Action
	switch _, err := hist.Run(o.Release); {
	case errors.Is(err, driver.ErrReleaseNotFound):
		in := action.NewInstall(cfg)
		in.ReleaseName, in.Namespace, in.Timeout = o.Release, Namespace, o.Timeout
		if _, err := in.RunWithContext(ctx, ch, vals); err != nil {
			return "", fmt.Errorf("helm install %s: %w", o.Release, err)
		}
		act = Installed
	case err != nil:
		return "", fmt.Errorf("helm history %s: %w", o.Release, err)
	default:
		up := action.NewUpgrade(cfg)
		up.Namespace, up.Timeout = Namespace, o.Timeout
		if _, err := up.RunWithContext(ctx, o.Release, ch, vals); err != nil {
			return "", fmt.Errorf("helm upgrade %s: %w", o.Release, err)
		}
		act = Upgraded
	}
	return act, nil
}

// WaitAgents waits up to timeout (DefaultTimeout when 0) for the agent DaemonSet to be rolled out and
// ready on every node of the cluster that kubeconfig reaches.
func WaitAgents(ctx context.Context, kubeconfig []byte, timeout time.Duration) error {
	cs, wctx, cancel, err := clientWithin(ctx, kubeconfig, timeout)
	if err != nil {
		return err
	}
	defer cancel()
	return WaitDaemonSet(wctx, cs, Namespace, ReleaseName, 2*time.Second)
}

// clientWithin returns a clientset of kubeconfig and a context that ends after timeout (DefaultTimeout
// when 0): what every wait of install starts with.
func clientWithin(ctx context.Context, kubeconfig []byte, timeout time.Duration) (kubernetes.Interface, context.Context, context.CancelFunc, error) {
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	cs, err := Clientset(kubeconfig)
	if err != nil {
		return nil, nil, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	return cs, wctx, cancel, nil
}

// DaemonSetRolledOut reports whether every scheduled pod of ds runs its current template and is ready,
// and if not, why.
func DaemonSetRolledOut(ds *appsv1.DaemonSet) (bool, string) {
	s := ds.Status
	switch {
	case s.ObservedGeneration < ds.Generation:
		return false, "update not yet observed by the controller"
	case s.DesiredNumberScheduled == 0:
		return false, "no node scheduled"
	case s.UpdatedNumberScheduled < s.DesiredNumberScheduled:
		return false, fmt.Sprintf("%d of %d pods updated", s.UpdatedNumberScheduled, s.DesiredNumberScheduled)
	case s.NumberReady < s.DesiredNumberScheduled || s.NumberAvailable < s.DesiredNumberScheduled:
		return false, fmt.Sprintf("%d of %d pods ready", s.NumberReady, s.DesiredNumberScheduled)
	}
	return true, ""
}

// WaitDaemonSet polls the DaemonSet until it is rolled out on every node or ctx ends; the error then
// says how far it got.
func WaitDaemonSet(ctx context.Context, cs kubernetes.Interface, namespace, name string, interval time.Duration) error {
	last := "not found"
	var selector string
	err := wait.PollUntilContextCancel(ctx, interval, true, func(ctx context.Context) (bool, error) {
		ds, err := cs.AppsV1().DaemonSets(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			last = "not found"
			return false, nil
		}
		if err != nil {
			if ctx.Err() == nil { // keep the last real state, not the poll's own deadline
				last = err.Error()
			}
			return false, nil // the API server may be briefly away; keep trying until ctx ends
		}
		if ds.Spec.Selector != nil {
			selector = metav1.FormatLabelSelector(ds.Spec.Selector)
		}
		ok, why := DaemonSetRolledOut(ds)
		last = why
		return ok, nil
	})
	if err != nil {
		if selector != "" {
			last += podProblems(context.WithoutCancel(ctx), cs, namespace, selector)
		}
		return fmt.Errorf("wait for daemonset %s/%s: %s: %w", namespace, name, last, err)
	}
	return nil
}

// podProblems names, for pods that are not ready, the reason their containers wait or ended, so a
// failed install says "CreateContainerError: ..." instead of only a count.
func podProblems(ctx context.Context, cs kubernetes.Interface, namespace, selector string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, pod := range pods.Items {
		statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
		for _, st := range statuses {
			var why string
			switch {
			case st.State.Waiting != nil && st.State.Waiting.Reason != "" && st.State.Waiting.Reason != "PodInitializing":
				why = st.State.Waiting.Reason + ": " + st.State.Waiting.Message
			case st.State.Terminated != nil && st.State.Terminated.ExitCode != 0:
				why = st.State.Terminated.Reason + ": " + st.State.Terminated.Message
			case st.LastTerminationState.Terminated != nil && !st.Ready:
				why = "restarted after " + st.LastTerminationState.Terminated.Reason
			default:
				continue
			}
			fmt.Fprintf(&b, "\n  pod %s on %s, container %s: %s", pod.Name, pod.Spec.NodeName, st.Name, strings.TrimRight(why, ": "))
			break
		}
	}
	return b.String()
}

// RESTClientGetter gives Helm a cluster from an in-memory kubeconfig.
type RESTClientGetter struct {
	cc        clientcmd.ClientConfig
	namespace string
}

// Clientset returns a Kubernetes client for the cluster kubeconfig (its current context) reaches.
func Clientset(kubeconfig []byte) (*kubernetes.Clientset, error) {
	rc, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, nil
}

// NewRESTClientGetter parses kubeconfig; namespace is the default namespace of Helm's client.
func NewRESTClientGetter(kubeconfig []byte, namespace string) (*RESTClientGetter, error) {
	cc, err := clientcmd.NewClientConfigFromBytes(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("parse kubeconfig: %w", err)
	}
	return &RESTClientGetter{cc: cc, namespace: namespace}, nil
}

// ToRESTConfig returns the client configuration.
func (g *RESTClientGetter) ToRESTConfig() (*rest.Config, error) {
	rc, err := g.cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return rc, nil
}

// ToDiscoveryClient returns a memory-cached discovery client.
func (g *RESTClientGetter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	rc, err := g.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, err
	}
	return memory.NewMemCacheClient(dc), nil
}

// ToRESTMapper returns a discovery-backed REST mapper.
func (g *RESTClientGetter) ToRESTMapper() (meta.RESTMapper, error) {
	dc, err := g.ToDiscoveryClient()
	if err != nil {
		return nil, err
	}
	m := restmapper.NewDeferredDiscoveryRESTMapper(dc)
	return restmapper.NewShortcutExpander(m, dc, nil), nil
}

// ToRawKubeConfigLoader returns the kubeconfig loader, with the getter's namespace as the default.
func (g *RESTClientGetter) ToRawKubeConfigLoader() clientcmd.ClientConfig {
	return namespaced{cc: g.cc, ns: g.namespace}
}

// namespaced overrides the kubeconfig context's namespace.
type namespaced struct {
	cc clientcmd.ClientConfig
	ns string
}

func (n namespaced) RawConfig() (clientcmdapi.Config, error) { return n.cc.RawConfig() }
func (n namespaced) ClientConfig() (*rest.Config, error)     { return n.cc.ClientConfig() }
func (n namespaced) Namespace() (string, bool, error)        { return n.ns, true, nil }
func (n namespaced) ConfigAccess() clientcmd.ConfigAccess    { return n.cc.ConfigAccess() }
