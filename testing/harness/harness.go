package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	cloudprovider "k8s.io/cloud-provider"
	cloudproviderapi "k8s.io/cloud-provider/api"
	"k8s.io/cloud-provider/app/config"
	cloudnode "k8s.io/cloud-provider/controllers/node"
	nodelifecycle "k8s.io/cloud-provider/controllers/nodelifecycle"
	"k8s.io/cloud-provider/names"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"

	"github.com/ccmkit/ccmkit/framework"
)

// Controller names accepted in Options.Controllers (upstream's canonical
// names).
const (
	CloudNode     = names.CloudNodeController
	NodeLifecycle = names.CloudNodeLifecycleController
)

// Options configures Start. The zero value means defaults.
type Options struct {
	// Provider is the cloud under test, required. A *framework.Provider's
	// extra controllers are not started unless listed in Extra.
	Provider cloudprovider.Interface
	// Client is the API client (default a new fake clientset). Ignored
	// when Kubeconfig is set.
	Client kubernetes.Interface
	// Kubeconfig, when set, points the harness at a real API server.
	Kubeconfig string
	// Controllers lists the upstream controllers to run (default CloudNode
	// and NodeLifecycle).
	Controllers []string
	// Extra are ccmkit controllers to start beside upstream's.
	Extra []framework.Controller
	// Config is the manager configuration (flags such as --cluster-cidr)
	// handed to the Extra controllers; nil for none.
	Config *config.CompletedConfig
	// NodeMonitorPeriod is the lifecycle controller's period (default 5s,
	// upstream's default).
	NodeMonitorPeriod time.Duration
	// NodeStatusUpdateFrequency is the node controller's address refresh
	// period (default 5m, upstream's default).
	NodeStatusUpdateFrequency time.Duration
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

	opts   Options
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Start builds the client, initializes the provider as the manager does
// (Initialize, then SetInformers), starts the controllers and the informers,
// waits for the informers to sync, and registers Stop with t.Cleanup. It
// fails the test on any setup error.
func Start(t testing.TB, opts Options) *Harness {
	t.Helper()
	h, err := start(t.Context(), opts)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Cleanup(h.Stop)
	return h
}

func start(parent context.Context, opts Options) (*Harness, error) {
	bubbleSafeErrorBackoff()
	if opts.Provider == nil {
		return nil, errors.New("Options.Provider is required")
	}
	if opts.Controllers == nil {
		opts.Controllers = []string{CloudNode, NodeLifecycle}
	}
	if opts.NodeMonitorPeriod == 0 {
		opts.NodeMonitorPeriod = 5 * time.Second
	}
	if opts.NodeStatusUpdateFrequency == 0 {
		opts.NodeStatusUpdateFrequency = 5 * time.Minute
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	if opts.WaitTimeout == 0 {
		opts.WaitTimeout = 2 * time.Minute
	}
	var restConfig *restclient.Config
	client := opts.Client
	if opts.Kubeconfig != "" {
		var err error
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
		client = fake.NewClientset()
	}
	ctx, cancel := context.WithCancel(parent)
	h := &Harness{
		Client:    client,
		Informers: informers.NewSharedInformerFactory(client, 0),
		Provider:  opts.Provider,
		opts:      opts,
		ctx:       ctx,
		cancel:    cancel,
	}
	opts.Provider.Initialize(clientBuilder{client: client, config: restConfig}, ctx.Done())
	if iu, ok := opts.Provider.(cloudprovider.InformerUser); ok {
		iu.SetInformers(h.Informers)
	}
	metrics := controllersmetrics.NewControllerManagerMetrics("ccmkit-harness")
	var runs []func()
	for _, name := range opts.Controllers {
		run, err := h.upstream(name, metrics)
		if err != nil {
			cancel()
			return nil, err
		}
		runs = append(runs, run)
	}
	for _, run := range runs {
		h.wg.Go(run)
	}
	p, _ := opts.Provider.(*framework.Provider)
	for _, c := range opts.Extra {
		err := c.Start(ctx, framework.ControllerContext{Client: client, Informers: h.Informers, Config: opts.Config, Provider: p, Metrics: metrics})
		if err != nil {
			h.Stop()
			return nil, fmt.Errorf("controller %q: %w", c.Name, err)
		}
	}
	h.Informers.Start(ctx.Done())
	for typ, ok := range h.Informers.WaitForCacheSync(ctx.Done()) {
		if !ok {
			h.Stop()
			return nil, fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	return h, nil
}

func (h *Harness) upstream(name string, metrics *controllersmetrics.ControllerManagerMetrics) (func(), error) {
	nodes := h.Informers.Core().V1().Nodes()
	switch name {
	case CloudNode:
		c, err := cloudnode.NewCloudNodeController(nodes, h.Client, h.Provider, h.opts.NodeStatusUpdateFrequency, 1, 1)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return func() { c.RunWithContext(h.ctx, metrics) }, nil
	case NodeLifecycle:
		c, err := nodelifecycle.NewCloudNodeLifecycleController(nodes, h.Client, h.Provider, h.opts.NodeMonitorPeriod, 1)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return func() { c.Run(h.ctx, metrics) }, nil
	}
	return nil, fmt.Errorf("unknown controller %q (known: %s, %s)", name, CloudNode, NodeLifecycle)
}

// Stop stops every controller and the informers and waits for them to
// return. It is idempotent; Start registers it with t.Cleanup.
func (h *Harness) Stop() {
	h.once.Do(func() {
		h.cancel()
		h.wg.Wait()
		h.Informers.Shutdown()
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
	var last *v1.Node
	h.WaitFor(t, fmt.Sprintf("node %s: %s", name, what), func(ctx context.Context) (bool, error) {
		n, err := h.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		last = n
		return cond(n), nil
	})
	return last
}

// WaitForNodeGone waits until node name is deleted.
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

// NewNode returns a Node as a kubelet with --cloud-provider=external
// registers it: carrying the uninitialized taint, with the given Ready
// status ("" for no Ready condition at all).
func NewNode(name string, ready v1.ConditionStatus) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
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

// HasTaint reports whether node carries a taint with key.
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
