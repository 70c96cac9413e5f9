package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubedirect/kubedirect/dataplane/agent/agentstatus"
	"github.com/kubedirect/kubedirect/dataplane/cni"
	"github.com/kubedirect/kubedirect/dataplane/config"
	"github.com/kubedirect/kubedirect/dataplane/loader"
	"github.com/kubedirect/kubedirect/dataplane/maps"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// nodesKey is the queue item that re-reads the Nodes (tunnels, this node's config, topology).
const nodesKey = "\x00nodes"

// sliceIndex indexes EndpointSlices by the "namespace/name" of their Service.
const sliceIndex = "service"

func sliceServiceKey(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// Labels by which a Service (and its EndpointSlices) opts out of the default service proxy, as
// kube-proxy honours them: another proxy named by the first serves it; the second marks the
// EndpointSlices of headless Services, which have nothing to proxy.
const (
	LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	LabelHeadless         = corev1.IsHeadlessService
)

// newInformerFactories returns the factory for Services and EndpointSlices, which lists only the
// objects kube-proxy would serve (none of the opt-out labels above), and one for Nodes. Both cache
// objects stripped to what the agent reads (stripObject).
func newInformerFactories(kc kubernetes.Interface) (services, nodes informers.SharedInformerFactory) {
	sel := labels.NewSelector()
	for _, l := range []string{LabelServiceProxyName, LabelHeadless} {
		r, err := labels.NewRequirement(l, selection.DoesNotExist, nil)
		if err != nil {
			panic(err) // constant labels: cannot fail
		}
		sel = sel.Add(*r)
	}
	services = informers.NewSharedInformerFactoryWithOptions(kc, 0, informers.WithTransform(stripObject),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }))
	return services, informers.NewSharedInformerFactoryWithOptions(kc, 0, informers.WithTransform(stripObject))
}

// Options configure an Agent.
type Options struct {
	// Config is the agent configuration (defaulted).
	Config *config.Config
	// NodeName is the Node this agent serves.
	NodeName string
	// Client talks to the API server.
	Client kubernetes.Interface
	// Logger receives every log line.
	Logger *slog.Logger
}

// Agent programs one node's dataplane from the API server.
type Agent struct {
	cfg  *config.Config
	node string
	kc   kubernetes.Interface
	log  *slog.Logger

	dp    *loader.Datapath
	prog  *Programmer
	queue workqueue.TypedRateLimitingInterface[string]
	rec   record.EventRecorder

	hc      *serviceHealth
	started time.Time

	metrics *metrics
	// loaded is the datapath's map set once Run loaded it (the metrics handler runs before).
	loaded atomic.Pointer[maps.Set]
	// readCounters reads the datapath counters (the loaded maps; a fixed set in tests).
	readCounters func() (maps.Counters, error)

	svcLister    corelisters.ServiceLister
	sliceIndexer cache.Indexer
	nodeLister   corelisters.NodeLister

	// worker-owned
	topo      Topology
	tunnels   map[netip.Prefix]netip.Addr
	nodeAddrs map[netip.Addr]bool
	netdev    string
	endpoints map[netip.Addr]maps.EndpointValue // endpoints goroutine only: what the map holds
	cniReqs   chan cniRequest                   // CNI plugin requests for the endpoints goroutine
	failedEP  map[netip.Addr]bool               // endpoints goroutine only

	// cfgMu serializes read-modify-writes of kd_config: the node config and monitor sessions' sampling.
	cfgMu sync.Mutex

	mu     sync.Mutex
	status Status
	// skipped are the Services the dataplane cannot serve, with the reason (Status.Skipped); under mu.
	skipped map[string]string
	// changed holds the time of the first informer event of each Service change not yet programmed;
	// under mu.
	changed map[string]time.Time
}

// Status is the agent's /status document (agentstatus.Status, which the validation reads too).
type Status = agentstatus.Status

// New validates the options.
func New(o Options) (*Agent, error) {
	if o.Config == nil || o.Client == nil || o.NodeName == "" {
		return nil, errors.New("agent: config, client and node name are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &Agent{cfg: o.Config, node: o.NodeName, kc: o.Client, log: o.Logger.With("node", o.NodeName),
		tunnels: map[netip.Prefix]netip.Addr{}, nodeAddrs: map[netip.Addr]bool{}, failedEP: map[netip.Addr]bool{},
		endpoints: map[netip.Addr]maps.EndpointValue{}, cniReqs: make(chan cniRequest, 64),
		status: Status{Node: o.NodeName}, skipped: map[string]string{}, changed: map[string]time.Time{}}
	a.readCounters = func() (maps.Counters, error) {
		if s := a.loaded.Load(); s != nil {
			return s.ReadMetrics()
		}
		return maps.Counters{}, nil // not loaded yet: no datapath series
	}
	a.metrics = newMetrics(a)
	return a, nil
}

// Run starts the informers, loads the datapath (adopting pinned maps) while they list, waits for this
// node's Node object, programs the full state once, reports ready and then follows changes until ctx ends. The datapath stays in place when
// Run returns (maps and attachments are pinned).
func (a *Agent) Run(ctx context.Context) error {
	start := time.Now()
	a.started = start
	health := a.serveHealth(ctx)
	defer health()
	proxyHealth := a.serveProxyHealth(ctx)
	defer proxyHealth()
	a.hc = newServiceHealth("", func() bool { return a.Snapshot().Ready }, a.log)
	defer a.hc.Close()
	if err := ReservePorts(localReservedPortsPath, a.cfg.NodePortRange); err != nil {
		// not fatal: only host processes whose ephemeral port falls in the range are affected
		a.log.Warn("reserve the NodePort range from ephemeral ports", "range", a.cfg.NodePortRange, "err", err)
	}

	factory, nodeFactory := newInformerFactories(a.kc)
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	nodeInf := nodeFactory.Core().V1().Nodes()
	a.svcLister, a.nodeLister = svcInf.Lister(), nodeInf.Lister()
	a.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer a.queue.ShutDown()

	enqueueSvc := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			a.noteChange(k)
			a.queue.Add(k)
		}
	}
	enqueueSlice := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
			if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
				a.noteChange(s.Namespace + "/" + name)
				a.queue.Add(s.Namespace + "/" + name)
			}
		}
	}
	h := func(f func(any)) cache.ResourceEventHandlerFuncs {
		return cache.ResourceEventHandlerFuncs{AddFunc: f, UpdateFunc: func(_, n any) { f(n) }, DeleteFunc: f}
	}
	if _, err := svcInf.Informer().AddEventHandler(h(enqueueSvc)); err != nil {
		return fmt.Errorf("watch services: %w", err)
	}
	if err := sliceInf.Informer().AddIndexers(cache.Indexers{sliceIndex: sliceServiceKey}); err != nil {
		return fmt.Errorf("index endpointslices: %w", err)
	}
	a.sliceIndexer = sliceInf.Informer().GetIndexer()
	if _, err := sliceInf.Informer().AddEventHandler(h(enqueueSlice)); err != nil {
		return fmt.Errorf("watch endpointslices: %w", err)
	}
	if _, err := nodeInf.Informer().AddEventHandler(h(func(any) { a.queue.Add(nodesKey) })); err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	// The API lists start before the datapath loads: neither waits for the other. Shutdown waits for
	// the informers, so they stop with Run's return (infCancel runs first), not only with ctx.
	infCtx, infCancel := context.WithCancel(ctx)
	for _, f := range []informers.SharedInformerFactory{factory, nodeFactory} {
		f.Start(infCtx.Done())
		defer f.Shutdown()
	}
	defer infCancel()
	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.kc.CoreV1().Events("")})
	defer bc.Shutdown()
	a.rec = bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubedirect-agent", Host: a.node})

	// ReplaceIncompatible: an upgrade whose map layouts changed must come up (the agent rewrites
	// services, backends, tunnels, endpoints and config from the API server); only the flows of a
	// replaced conntrack map are lost, which the loader logs.
	dp, err := loader.Load(ctx, loader.Options{PinDir: a.cfg.BPFFSPath, Logger: a.log, ReplaceIncompatible: true, MapSizes: a.cfg.MapSizes})
	if err != nil {
		return fmt.Errorf("load datapath: %w", err)
	}
	a.dp = dp
	a.loaded.Store(dp.Maps)
	defer dp.Close()
	a.log.Info("datapath loaded", "pinDir", a.cfg.BPFFSPath, "adoptedMaps", len(dp.Adopted), "sinceStart", a.startupPhase(phaseDatapathLoaded).Round(time.Millisecond))
	a.prog = NewProgrammer(dp.Maps)
	if err := a.prog.Adopt(); err != nil {
		return err
	}

	for _, f := range []informers.SharedInformerFactory{factory, nodeFactory} {
		for typ, ok := range f.WaitForCacheSync(infCtx.Done()) {
			if !ok {
				return fmt.Errorf("sync %v informer: %w", typ, ctx.Err())
			}
		}
	}
	a.log.Info("informers synced", "sinceStart", a.startupPhase(phaseInformersSynced).Round(time.Millisecond))

	if err := a.waitForNode(ctx); err != nil {
		return err
	}
	if err := a.initialSync(ctx); err != nil {
		return err
	}

	var wg sync.WaitGroup
	wg.Add(7)
	go func() {
		defer wg.Done()
		if err := cni.Serve(ctx, a.cfg.CNIDataDir, a.handleCNI); err != nil {
			a.log.Error("CNI plugin socket: pods are programmed at the periodic resync only", "err", err)
		}
	}()
	go func() { defer wg.Done(); a.watchNodeAddrs(ctx) }()
	go func() { defer wg.Done(); a.runWorker(ctx) }()
	go func() { defer wg.Done(); a.retrySkipped(ctx, 30*time.Second) }()
	go func() { defer wg.Done(); a.runEndpoints(ctx) }()
	go func() { defer wg.Done(); a.runConntrackGC(ctx) }()
	go func() { defer wg.Done(); a.runFlows(ctx) }()
	<-ctx.Done()
	a.queue.ShutDown()
	wg.Wait()
	a.log.Info("agent stopped; datapath stays pinned", "dir", a.cfg.BPFFSPath)
	return nil
}

// waitForNode waits until this node's Node has an InternalIP and a pod CIDR, then sets up the node.
func (a *Agent) waitForNode(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		err := a.adoptNodes()
		if err == nil {
			err = a.syncNodes()
		}
		if err == nil {
			return nil
		}
		a.log.Info("waiting for this node", "reason", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// initialSync programs every Service (reusing adopted entries), removes adopted entries of Services that
// are gone, reconciles endpoints and reports ready.
func (a *Agent) initialSync(ctx context.Context) error {
	start := time.Now()
	svcs, err := a.svcLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	// one batch: each map written with a few syscalls, not one per entry
	a.prog.Begin()
	for _, s := range svcs {
		a.syncService(ctx, s.Namespace+"/"+s.Name)
	}
	if err := a.prog.Commit(); err != nil {
		// the maps hold part of the batch (a full map, say): take them as they are and program Service
		// by Service, which skips and reports just the Services that do not fit
		a.log.Warn("batched initial sync failed; programming Service by Service", "err", err)
		a.prog = NewProgrammer(a.dp.Maps)
		if err := a.prog.Adopt(); err != nil {
			return err
		}
		for _, s := range svcs {
			a.syncService(ctx, s.Namespace+"/"+s.Name)
		}
	}
	if err := a.prog.FinishAdoption(); err != nil {
		a.log.Error("remove stale services", "err", err)
	}
	if err := a.adoptEndpoints(); err != nil {
		a.log.Error("adopt endpoints", "err", err)
	}
	if err := a.syncEndpoints(); err != nil {
		a.log.Error("sync endpoints", "err", err)
	}
	a.setReady()
	a.metrics.fullSync.Observe(time.Since(start).Seconds())
	s, f, b := a.prog.Counts()
	a.log.Info("initial sync done; ready", "services", s, "frontends", f, "backends", b, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (a *Agent) runWorker(ctx context.Context) {
	for {
		key, quit := a.queue.Get()
		if quit {
			return
		}
		if key == nodesKey {
			if err := a.syncNodes(); err != nil {
				a.log.Error("sync nodes", "err", err)
			}
		} else if retry := a.syncService(ctx, key); retry && a.queue.NumRequeues(key) < 5 {
			a.queue.AddRateLimited(key)
		} else {
			a.queue.Forget(key)
		}
		a.queue.Done(key)
	}
}

// syncService programs one Service and records how long it took and, for a change that wrote to the
// maps, how long after its informer event; it returns true when a retry may help.
func (a *Agent) syncService(ctx context.Context, key string) bool {
	start, writes := time.Now(), a.prog.Writes
	retry, programmed := a.syncServiceOnce(ctx, key)
	a.metrics.serviceSync.Observe(time.Since(start).Seconds())
	switch {
	case programmed:
		a.programmed(key, a.prog.Writes != writes)
	case !retry: // skipped: never programmed, nothing to wait for
		a.forgetChange(key)
	}
	return retry
}

// syncServiceOnce programs one Service; it returns whether a retry may help and whether the maps now
// hold the Service's state.
func (a *Agent) syncServiceOnce(_ context.Context, key string) (retry, programmed bool) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return false, false
	}
	svc, err := a.svcLister.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		err = a.prog.Apply(key, ServiceState{})
		_ = a.hc.Sync(key, 0, 0)
		a.done(key, "", err)
		return err != nil, err == nil
	}
	if err != nil {
		return true, false
	}
	objs, err := a.sliceIndexer.ByIndex(sliceIndex, key)
	if err != nil {
		return true, false
	}
	slices := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			slices = append(slices, s)
		}
	}
	topo := a.topo
	if n, err := a.nodeLister.Get(a.node); err == nil {
		topo.Zone = n.Labels[corev1.LabelTopologyZone]
	}
	st, err := Translate(svc, slices, &topo)
	if err != nil {
		a.skip(svc, key, "Unsupported", err)
		return false, false
	}
	if err := a.prog.Apply(key, st); err != nil {
		a.skip(svc, key, "ProgramFailed", err)
		return true, false
	}
	if err := a.hc.Sync(key, st.HealthCheckNodePort, st.LocalReady); err != nil {
		// kube-proxy's event for the same failure; the datapath is programmed, the retry reopens
		a.log.Warn("service health check", "service", key, "err", err)
		a.rec.Eventf(svc, corev1.EventTypeWarning, "FailedToStartServiceHealthcheck", "node %s: %v", a.node, err)
		a.done(key, "", nil)
		return true, true
	}
	a.done(key, "", nil)
	return false, true
}

// skip removes whatever is programmed of the Service, records why, and emits a Warning Event.
func (a *Agent) skip(svc *corev1.Service, key, reason string, err error) {
	_ = a.prog.Apply(key, ServiceState{})
	_ = a.hc.Sync(key, 0, 0)
	a.log.Warn("service skipped", "service", key, "reason", reason, "err", err)
	a.rec.Eventf(svc, corev1.EventTypeWarning, reason, "kubedirect on node %s cannot serve this Service: %v", a.node, err)
	a.done(key, reason+": "+err.Error(), err)
}

func (a *Agent) done(key, skipped string, err error) {
	s, f, b := a.prog.Counts()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status.Syncs++
	a.status.LastSync = time.Now().UTC()
	if err != nil {
		a.status.SyncErrors++
		a.status.LastSyncError = key + ": " + err.Error()
	}
	if skipped != "" {
		a.skipped[key] = skipped
	} else {
		delete(a.skipped, key)
	}
	a.status.Services, a.status.Frontends, a.status.Backends, a.status.MapWrites = s, f, b, a.prog.Writes
}

// Snapshot returns the current status.
func (a *Agent) Snapshot() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.status
	st.Skipped = nil
	for k, v := range a.skipped {
		st.Skipped = append(st.Skipped, k+": "+v)
	}
	return st
}

// retrySkipped re-queues the skipped Services every interval: a full map may have room again.
func (a *Agent) retrySkipped(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		keys := make([]string, 0, len(a.skipped))
		for k := range a.skipped {
			keys = append(keys, k)
		}
		a.mu.Unlock()
		for _, k := range keys {
			a.queue.Add(k)
		}
	}
}

func (a *Agent) runConntrackGC(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		start := time.Now()
		tables, err := a.dp.Maps.ConntrackGCTables()
		deleted, live := maps.ConntrackGCTotals(tables)
		if err != nil {
			a.log.Error("conntrack gc", "err", err)
		} else {
			a.metrics.observeGC(deleted, live, time.Since(start))
			if ev, err := a.dp.Maps.ConntrackEvictions(tables); err != nil {
				a.log.Error("conntrack evictions", "err", err)
			} else {
				a.metrics.observeEvictions(ev)
			}
			if deleted > 0 {
				a.log.Debug("conntrack gc", "deleted", deleted, "live", live)
			}
		}
		a.mu.Lock()
		a.status.Conntrack = live
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// endpointResync is how often the endpoints are re-read without a word from the CNI plugin: a safety
// net (a pod whose veth could not be attached is retried, a pod added while the socket was not yet
// served is found); ADD and DEL are handled as they come.
const endpointResync = 10 * time.Second

// cniRequest is one request of the CNI plugin, handed to the endpoints goroutine.
type cniRequest struct {
	cni.Request
	reply chan cni.Reply
}

// handleCNI answers the CNI plugin: it has the endpoints goroutine sync and reports whether the pod is
// now programmed (ADD) or removed (DEL).
func (a *Agent) handleCNI(ctx context.Context, r cni.Request) cni.Reply {
	req := cniRequest{Request: r, reply: make(chan cni.Reply, 1)}
	select {
	case a.cniReqs <- req:
	case <-ctx.Done():
		return cni.Reply{Error: "agent stopping"}
	}
	select {
	case rep := <-req.reply:
		return rep
	case <-ctx.Done():
		return cni.Reply{Error: "agent stopping"}
	}
}

// runEndpoints keeps the endpoints in sync: at once, on each CNI plugin request and every
// endpointResync.
func (a *Agent) runEndpoints(ctx context.Context) {
	t := time.NewTicker(endpointResync)
	defer t.Stop()
	var pending []cniRequest
	for {
		err := a.syncEndpoints()
		if err != nil {
			a.log.Error("sync endpoints", "err", err)
		}
		for _, req := range pending {
			req.reply <- a.endpointReply(req.Request, err)
		}
		pending = pending[:0]
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case req := <-a.cniReqs:
			// one sync serves every request already waiting
			pending = drain(a.cniReqs, append(pending, req))
		}
	}
}

// drain appends the requests already waiting in ch to out.
func drain(ch <-chan cniRequest, out []cniRequest) []cniRequest {
	for {
		select {
		case r := <-ch:
			out = append(out, r)
		default:
			return out
		}
	}
}

// endpointReply tells the CNI plugin whether its request is done after a sync that returned err.
func (a *Agent) endpointReply(r cni.Request, err error) cni.Reply {
	v, ok := a.endpoints[r.IP]
	switch {
	case r.Op == cni.OpAdd && ok && int(v.Ifindex) == r.HostIfindex, r.Op == cni.OpDel && !ok:
		return cni.Reply{Done: true}
	case err != nil:
		return cni.Reply{Error: err.Error()}
	}
	if r.Op == cni.OpDel {
		return cni.Reply{Error: fmt.Sprintf("pod %s is still programmed", r.IP)}
	}
	return cni.Reply{Error: fmt.Sprintf("pod %s (ifindex %d) is not programmed", r.IP, r.HostIfindex)}
}

// adoptEndpoints takes the pods a previous agent programmed (the pinned endpoints map) as what the
// datapath holds, and swaps this agent's container programs into the attachments of those that are
// still wanted; syncEndpoints then writes only the differences.
func (a *Agent) adoptEndpoints() error {
	want, err := a.desiredEndpoints()
	if err != nil {
		return err
	}
	var errs []error
	err = a.dp.Maps.IterateEndpoints(func(ip netip.Addr, v maps.EndpointValue) bool {
		if w, ok := want[ip]; ok && w == v {
			errs = append(errs, a.programEndpoint(ip, v))
		}
		a.endpoints[ip] = v
		return true
	})
	if err != nil {
		return fmt.Errorf("adopt endpoints: %w", err)
	}
	return errors.Join(errs...)
}

func (a *Agent) desiredEndpoints() (map[netip.Addr]maps.EndpointValue, error) {
	eps, err := cni.Store{Dir: cni.IPAMDir(a.cfg.CNIDataDir)}.List()
	if err != nil {
		return nil, err
	}
	return desiredEndpoints(eps), nil
}

// syncEndpoints makes the endpoints map hold the pods the CNI plugin attached (its IPAM files), with
// the container programs attached to their veths.
func (a *Agent) syncEndpoints() error {
	want, err := a.desiredEndpoints()
	if err != nil {
		return err
	}
	err = reconcile(a.endpoints, want, a.programEndpoint, a.removeEndpoint)
	a.mu.Lock()
	a.status.Endpoints = len(want)
	a.mu.Unlock()
	return err
}

// programEndpoint attaches the container programs to a pod's veth, writes its endpoint and tells the
// CNI plugin it is programmed.
func (a *Agent) programEndpoint(ip netip.Addr, v maps.EndpointValue) error {
	if err := a.dp.AttachContainer(int(v.Ifindex)); err != nil {
		err = fmt.Errorf("attach pod %s: %w", ip, err)
		if a.failedEP[ip] { // a stale IPAM file of a pod whose veth is gone: say it once, retry quietly
			return fmt.Errorf("%w: %w", errReported, err)
		}
		a.failedEP[ip] = true
		return err
	}
	delete(a.failedEP, ip)
	if err := a.dp.Maps.SetEndpoint(ip, v); err != nil {
		return err
	}
	a.log.Info("pod endpoint programmed", "ip", ip, "ifindex", v.Ifindex)
	return nil
}

// removeEndpoint detaches a gone pod's veth programs and deletes its endpoint.
func (a *Agent) removeEndpoint(ip netip.Addr, v maps.EndpointValue) error {
	_ = a.dp.DetachContainer(int(v.Ifindex))
	if err := a.dp.Maps.DeleteEndpoint(ip); err != nil {
		return err
	}
	a.log.Info("pod endpoint removed", "ip", ip)
	return nil
}
