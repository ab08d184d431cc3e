package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	cloudprovider "k8s.io/cloud-provider"
	cloudproviderapi "k8s.io/cloud-provider/api"
	"k8s.io/cloud-provider/app"
	"k8s.io/cloud-provider/names"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"

	"github.com/ccmkit/ccmkit/framework"
)

// Canonical names of the upstream controllers, for Options.Controllers
// (aliases such as "cloud-node", "service" and "route" work too).
const (
	CloudNode     = names.CloudNodeController
	NodeLifecycle = names.CloudNodeLifecycleController
	Service       = names.ServiceLBController
	Route         = names.NodeRouteController
	NodeIPAM      = framework.NodeIPAMControllerName
	// LoadBalancerReaper is ccmkit's orphaned load balancer reaper.
	LoadBalancerReaper = framework.LoadBalancerReaperName
)

// DefaultClusterName is the --cluster-name the harness passes unless
// Options set one: not upstream's default "kubernetes", under which ccmkit
// refuses to reap cloud resources.
const DefaultClusterName = "ccmkit-harness"

// Options configures Start. The zero value means defaults.
type Options struct {
	// Provider is the cloud under test, required: a *framework.Provider,
	// or any cloudprovider.Interface for upstream's controllers.
	Provider cloudprovider.Interface
	// Client is the API client. Default: NewFakeClientset, a fake
	// clientset that emulates what the controllers need from an API server
	// (UIDs, resourceVersion conflicts, graceful deletion, Service
	// defaulting). Ignored when Kubeconfig is set.
	Client kubernetes.Interface
	// Kubeconfig, when set, points the harness at a real API server.
	Kubeconfig string
	// Controllers lists the controllers to run, by canonical name or alias,
	// from the command's table (framework.Controllers): upstream's, ccmkit's
	// and Extra. Default: CloudNode and NodeLifecycle. A listed controller
	// whose New reports ErrNotStarted is skipped and recorded (see
	// Harness.Skipped); any other error fails Start.
	Controllers []string
	// Extra are the provider's own controllers, added to the table as
	// framework.CommandOptions.Controllers adds them.
	Extra []framework.Controller
	// Flags are command-line flags, parsed as the command parses them
	// ("--cluster-cidr=10.244.0.0/16", "--allocate-node-cidrs",
	// "--node-monitor-period=5s"). ClusterName and ClusterCIDRs are added
	// in front; a flag here wins.
	Flags []string
	// ClusterName is --cluster-name (default DefaultClusterName).
	ClusterName string
	// ClusterCIDRs is --cluster-cidr, comma-separated ("" for none). It
	// also sets the IP families of the fake clientset's Service defaulting
	// when Client is not set.
	ClusterCIDRs string
	// Resync is the shared informers' resync period. Default: as
	// upstream's manager, a random period between --min-resync-period
	// (12h) and twice that.
	Resync time.Duration
	// PollInterval and WaitTimeout shape the Wait helpers (defaults 100ms
	// and 2m; simulated time inside a synctest bubble).
	PollInterval, WaitTimeout time.Duration
}

// Harness is a running set of controllers. Its methods are safe for
// concurrent use.
type Harness struct {
	// Client is the API client the controllers use.
	Client kubernetes.Interface
	// Informers is the shared informer factory, started by Start.
	Informers informers.SharedInformerFactory
	// Provider is the cloud under test.
	Provider cloudprovider.Interface
	// Config is the configuration parsed from the flags.
	Config *framework.Config
	// Metrics is the controller-manager metrics the controllers record.
	Metrics *controllersmetrics.ControllerManagerMetrics

	opts    Options
	ctx     context.Context
	cancel  context.CancelFunc
	running []*framework.Tracked
	skipped map[string]error
	once    sync.Once
}

// Start parses the flags, builds the client, initializes the provider as
// the manager does (Initialize, then SetInformers), sets up every listed
// controller, starts the informers, waits for them to sync, runs the
// controllers, and registers Stop with t.Cleanup. It fails the test on any
// setup error. Inside a testing/synctest bubble call it from the bubble's
// function, and install the error backoff from TestMain (see Main).
func Start(t testing.TB, opts Options) *Harness {
	t.Helper()
	h, err := start(t.Context(), opts)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Cleanup(h.Stop)
	return h
}

// TryStart is Start for callers that handle the error themselves: it does
// not register Stop, which the caller must call on success.
func TryStart(ctx context.Context, opts Options) (*Harness, error) { return start(ctx, opts) }

func (o Options) args() []string {
	name := o.ClusterName
	if name == "" {
		name = DefaultClusterName
	}
	args := []string{"--cluster-name=" + name}
	if o.ClusterCIDRs != "" {
		args = append(args, "--cluster-cidr="+o.ClusterCIDRs)
	}
	return append(args, o.Flags...)
}

func start(parent context.Context, opts Options) (*Harness, error) {
	if !errorBackoffInstalled() {
		return nil, errNoErrorBackoff
	}
	if opts.Provider == nil {
		return nil, errors.New("Options.Provider is required")
	}
	if opts.Controllers == nil {
		opts.Controllers = []string{CloudNode, NodeLifecycle}
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = 2 * time.Minute
	}
	p, _ := opts.Provider.(*framework.Provider)
	cfg, err := framework.ParseConfig(framework.CommandOptions{
		ProviderName: opts.Provider.ProviderName(),
		Provider:     p,
		Controllers:  opts.Extra,
	}, opts.args())
	if err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	var restConfig *restclient.Config
	client := opts.Client
	if opts.Kubeconfig != "" {
		restConfig, err = clientcmd.BuildConfigFromFlags("", opts.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		client, err = kubernetes.NewForConfig(restConfig)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
	}
	if client == nil {
		client = NewFakeClientset(FakeOptions{IPFamilies: families(cfg)})
	}
	resync := opts.Resync
	if resync == 0 {
		resync = app.ResyncPeriod(cfg.Upstream)()
	}
	var run []framework.Controller
	for _, name := range opts.Controllers {
		c, ok := cfg.Controller(name)
		if !ok {
			return nil, fmt.Errorf("unknown controller %q (known: %s)", name, strings.Join(controllerNames(cfg.Controllers()), ", "))
		}
		run = append(run, c)
	}
	ctx, cancel := context.WithCancel(parent)
	h := &Harness{
		Client:    client,
		Informers: informers.NewSharedInformerFactory(client, resync),
		Provider:  opts.Provider,
		Config:    cfg,
		Metrics:   controllersmetrics.NewControllerManagerMetrics("ccmkit-harness"),
		opts:      opts,
		ctx:       ctx,
		cancel:    cancel,
		skipped:   map[string]error{},
	}
	opts.Provider.Initialize(clientBuilder{client: client, config: restConfig}, ctx.Done())
	if iu, ok := opts.Provider.(cloudprovider.InformerUser); ok {
		iu.SetInformers(h.Informers)
	}
	var runnables []framework.Runnable
	var started []framework.Controller
	for _, c := range run {
		if c.Check != nil {
			if err := c.Check(cfg); errors.Is(err, framework.ErrNotStarted) {
				h.skipped[c.Name] = err
				continue
			} else if err != nil {
				cancel()
				return nil, fmt.Errorf("controller %s: %w", c.Name, err)
			}
		}
		r, err := c.New(ctx, framework.ControllerContext{
			Client: client, Informers: h.Informers, Config: cfg, Cloud: opts.Provider, Provider: p, Metrics: h.Metrics,
		})
		if errors.Is(err, framework.ErrNotStarted) {
			h.skipped[c.Name] = err
			continue
		}
		if err != nil {
			cancel()
			return nil, fmt.Errorf("controller %s: %w", c.Name, err)
		}
		runnables = append(runnables, r)
		started = append(started, c)
	}
	h.Informers.Start(ctx.Done())
	for typ, ok := range h.Informers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			h.Stop()
			return nil, fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	for i, r := range runnables {
		h.running = append(h.running, framework.Start(ctx, started[i], r, h.Metrics))
	}
	return h, nil
}

func controllerNames(table []framework.Controller) []string {
	out := make([]string, len(table))
	for i, c := range table {
		out[i] = c.Name
	}
	return out
}

// families returns the IP families of the cluster CIDRs, IPv4 when none.
func families(cfg *framework.Config) []v1.IPFamily {
	var out []v1.IPFamily
	for _, p := range cfg.ClusterCIDRs {
		if p.Addr().Is4() {
			out = append(out, v1.IPv4Protocol)
		} else {
			out = append(out, v1.IPv6Protocol)
		}
	}
	if len(out) == 0 {
		out = []v1.IPFamily{v1.IPv4Protocol}
	}
	return out
}

// Skipped returns the reason a listed controller did not start (an error
// wrapping framework.ErrNotStarted), or nil if it runs.
func (h *Harness) Skipped(name string) error { return h.skipped[name] }

// Running reports whether the controller with the canonical name was
// started and has not stopped.
func (h *Harness) Running(name string) bool {
	for _, t := range h.running {
		if t.Name() == name {
			return !t.Stopped()
		}
	}
	return false
}

// Stop stops every controller and the informers and waits for every
// controller it started to return. It is idempotent; Start registers it
// with t.Cleanup.
//
// Upstream's controllers return from Run without waiting for their
// workers, and a worker that reported an error as its controller stopped
// sleeps out the error handlers' rate limit (1ms, see InstallErrorBackoff)
// before it sees its queue shut down. Stop therefore sleeps that long
// after the controllers have returned. Inside a synctest bubble that costs
// no real time and is what lets such a worker wake: the bubble's clock
// stops once its main goroutine exits, and a worker still asleep then
// deadlocks the bubble.
func (h *Harness) Stop() {
	h.once.Do(func() {
		h.cancel()
		for _, t := range h.running {
			<-t.Done()
		}
		h.Informers.Shutdown()
		time.Sleep(errorBackoffMinPeriod)
	})
}

// Context returns the harness's context, cancelled by Stop.
func (h *Harness) Context() context.Context { return h.ctx }

// WaitFor polls cond until it returns true, and fails the test with what
// when it returns an error or the wait times out.
func (h *Harness) WaitFor(t testing.TB, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(h.ctx, h.opts.PollInterval, h.opts.WaitTimeout, true, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// WaitForNode waits until node name exists and cond(node) holds.
func (h *Harness) WaitForNode(t testing.TB, name, what string, cond func(*v1.Node) bool) *v1.Node {
	t.Helper()
	get := func(ctx context.Context) (*v1.Node, error) {
		return h.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	}
	return waitForObject(t, h, fmt.Sprintf("node %s: %s", name, what), get, cond)
}

// waitForObject waits until get finds the object and cond holds, and
// returns the object last read.
func waitForObject[T any](t testing.TB, h *Harness, what string, get func(context.Context) (T, error), cond func(T) bool) T {
	t.Helper()
	var last T
	h.WaitFor(t, what, func(ctx context.Context) (bool, error) {
		obj, err := get(ctx)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		last = obj
		return cond(obj), nil
	})
	return last
}

// WaitForNodeGone waits until node name is deleted.
//
// The cloud-node-lifecycle controller deletes a Node only while its Ready
// condition is False or Unknown (a Node with no Ready condition counts as
// NotReady), and only once InstanceExists says the instance is gone: with
// ccmkit's instance cache that is after the cached entry expires (the cache
// TTL, 1 minute by default, or at once for a deleted instance the cache has
// not seen) plus one monitor period (--node-monitor-period, 5 s).
func (h *Harness) WaitForNodeGone(t testing.TB, name string) {
	t.Helper()
	h.WaitFor(t, "node "+name+" deleted", func(ctx context.Context) (bool, error) {
		_, err := h.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// WaitForEvent waits for an Event with the given reason about the object
// named name, and returns it.
func (h *Harness) WaitForEvent(t testing.TB, name, reason string) *v1.Event {
	t.Helper()
	var found *v1.Event
	h.WaitFor(t, fmt.Sprintf("event %s for %s", reason, name), func(ctx context.Context) (bool, error) {
		list, err := h.Client.CoreV1().Events(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for i := range list.Items {
			if e := &list.Items[i]; e.InvolvedObject.Name == name && e.Reason == reason {
				found = e
				return true, nil
			}
		}
		return false, nil
	})
	return found
}

// CreateNode creates node, failing the test on error.
func (h *Harness) CreateNode(t testing.TB, node *v1.Node) *v1.Node {
	t.Helper()
	n, err := h.Client.CoreV1().Nodes().Create(h.ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating node %s: %v", node.Name, err)
	}
	return n
}

// Node returns node name, failing the test if it cannot be read.
func (h *Harness) Node(t testing.TB, name string) *v1.Node {
	t.Helper()
	n, err := h.Client.CoreV1().Nodes().Get(h.ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting node %s: %v", name, err)
	}
	return n
}

// SetNodeReady sets node name's Ready condition (as a kubelet reports it,
// or stops reporting it with Unknown), failing the test on error.
func (h *Harness) SetNodeReady(t testing.TB, name string, status v1.ConditionStatus) {
	t.Helper()
	n := h.Node(t, name)
	n = n.DeepCopy()
	cond := v1.NodeCondition{Type: v1.NodeReady, Status: status}
	if i := slices.IndexFunc(n.Status.Conditions, func(c v1.NodeCondition) bool { return c.Type == v1.NodeReady }); i >= 0 {
		n.Status.Conditions[i] = cond
	} else {
		n.Status.Conditions = append(n.Status.Conditions, cond)
	}
	if _, err := h.Client.CoreV1().Nodes().UpdateStatus(h.ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("setting node %s Ready=%s: %v", name, status, err)
	}
}

// NewNode returns a Node as a kubelet with --cloud-provider=external
// registers it: carrying the uninitialized taint
// (cloudproviderapi.TaintExternalCloudProvider,
// "node.cloudprovider.kubernetes.io/uninitialized"), with the given Ready
// status ("" for no Ready condition at all), and a UID derived from the
// name (a real API server sets one; the fake clientset keeps it).
func NewNode(name string, ready v1.ConditionStatus) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Spec: v1.NodeSpec{Taints: []v1.Taint{{
			Key:    cloudproviderapi.TaintExternalCloudProvider,
			Value:  "true",
			Effect: v1.TaintEffectNoSchedule,
		}}},
	}
	if ready != "" {
		n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: ready}}
	}
	return n
}

// HasTaint reports whether node carries a taint with key, for instance
// cloudproviderapi.TaintExternalCloudProvider (not initialized yet) or
// cloudproviderapi.TaintNodeShutdown
// ("node.cloudprovider.kubernetes.io/shutdown", set by the lifecycle
// controller on a NotReady Node whose instance is stopped).
func HasTaint(node *v1.Node, key string) bool {
	return slices.ContainsFunc(node.Spec.Taints, func(t v1.Taint) bool { return t.Key == key })
}

// clientBuilder hands the same client to every controller, as
// cloudprovider.ControllerClientBuilder.
type clientBuilder struct {
	client kubernetes.Interface
	config *restclient.Config
}

func (b clientBuilder) Config(string) (*restclient.Config, error) {
	if b.config == nil {
		return nil, errors.New("harness: no REST config with a fake clientset")
	}
	return restclient.CopyConfig(b.config), nil
}

func (b clientBuilder) ConfigOrDie(name string) *restclient.Config {
	c, err := b.Config(name)
	if err != nil {
		panic(err)
	}
	return c
}

func (b clientBuilder) Client(string) (kubernetes.Interface, error) { return b.client, nil }

func (b clientBuilder) ClientOrDie(string) kubernetes.Interface { return b.client }
