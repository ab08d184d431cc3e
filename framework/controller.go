package framework

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/spf13/pflag"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app/config"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
	"k8s.io/controller-manager/controller"
	"k8s.io/controller-manager/pkg/healthz"
	"k8s.io/klog/v2"
)

// ErrNotStarted is wrapped by the error a Controller's New returns when the
// controller has nothing to do with this configuration (its block is not
// configured, a flag turns it off). The manager then skips it: it logs the
// reason, adds no health check and counts it in no metric. Any other error
// from New is fatal to the manager, as upstream's.
var ErrNotStarted = errors.New("controller not started")

// NotStarted returns an error wrapping ErrNotStarted with the reason.
func NotStarted(reason string) error { return fmt.Errorf("%w: %s", ErrNotStarted, reason) }

// Runnable is a started controller: Run blocks until ctx ends (or the
// controller fails) and returns. A nil error after ctx ended is a clean stop;
// any other return is logged and turns the controller's health check red.
type Runnable interface {
	Run(ctx context.Context) error
}

// RunFunc adapts a function to Runnable.
type RunFunc func(ctx context.Context) error

// Run calls f(ctx).
func (f RunFunc) Run(ctx context.Context) error { return f(ctx) }

// Controller is one entry of the controller table that the command and
// testing/harness share: upstream's controllers (see [Controllers]), ccmkit's
// (node IPAM) and a provider's own, all run the same way.
//
// A Controller is a description; its functions may be called from any
// goroutine but not concurrently for one command. A constructor such as
// [NodeIPAMController] returns a fresh one whose Flags bind to its own
// variables: use one value per command.
type Controller struct {
	// Name is the canonical name used by --controllers and leader
	// migration, and the name of the controller's --help section.
	Name string
	// Aliases are other names --controllers accepts for it.
	Aliases []string
	// ClientName is the identity of its API client (its service account
	// with --use-service-account-credentials). Default: Name.
	ClientName string
	// Replaces marks a controller that runs in place of the upstream
	// controller of the same canonical name. It keeps upstream's client
	// name (unless ClientName is set) and aliases.
	Replaces bool
	// DisabledByDefault leaves the controller off unless --controllers
	// names it ("--controllers=*,<name>"), as kube-controller-manager does
	// for its optional controllers.
	DisabledByDefault bool
	// Flags, when set, adds the controller's own flags. They are shown in
	// --help in a section named after the controller.
	Flags func(fs *pflag.FlagSet)
	// Check, when set, validates the configuration for the controller. The
	// command calls it for every enabled controller after the flags are
	// parsed and before leader election, so a bad flag stops every replica
	// at start instead of the elected one only. An error names the flag.
	Check func(cfg *Config) error
	// New sets the controller up: it registers informer handlers (the
	// shared informers start after every controller has been set up) and
	// returns the Runnable the manager runs in its own goroutine. An error
	// wrapping ErrNotStarted skips the controller; any other error is
	// fatal to the manager.
	New func(ctx context.Context, cc ControllerContext) (Runnable, error)

	// upstream marks upstream's controllers, whose Run records the
	// running_managed_controllers metric itself.
	upstream bool
}

// ControllerContext is what a Controller is set up with.
type ControllerContext struct {
	// Client is the controller's API client, built for its ClientName.
	Client kubernetes.Interface
	// Informers is the manager's shared informer factory; it is started
	// after every controller has been set up.
	Informers informers.SharedInformerFactory
	// Config is the manager's configuration (flags included).
	Config *Config
	// Cloud is the cloud the controllers serve: the Provider in the
	// command; in tests (testing/harness) any cloudprovider.Interface.
	Cloud cloudprovider.Interface
	// Provider is the ccmkit provider the controller serves; nil in tests
	// that run upstream's controllers against another
	// cloudprovider.Interface.
	Provider *Provider
	// Metrics records controller start and stop.
	Metrics *controllersmetrics.ControllerManagerMetrics
}

// Upstream returns the upstream completed configuration, or nil.
func (cc ControllerContext) Upstream() *config.CompletedConfig {
	if cc.Config == nil {
		return nil
	}
	return cc.Config.Upstream
}

func (c Controller) clientName() string {
	if c.ClientName != "" {
		return c.ClientName
	}
	return c.Name
}

func (c Controller) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("controller without a name"))
	}
	if c.New == nil {
		errs = append(errs, fmt.Errorf("controller %q has no New function", c.Name))
	}
	return errors.Join(errs...)
}

// Tracked is a running controller as the manager sees it: it implements
// controller.Interface and controller.HealthCheckable, and its health check
// fails once Run has returned. It is safe for concurrent use.
type Tracked struct {
	name    string
	done    chan struct{}
	stopped atomic.Bool
	err     atomic.Pointer[error]
}

var (
	_ controller.Interface       = (*Tracked)(nil)
	_ controller.HealthCheckable = (*Tracked)(nil)
)

// Name returns the controller's canonical name.
func (t *Tracked) Name() string { return t.name }

// HealthChecker returns a check that passes while the controller runs.
func (t *Tracked) HealthChecker() healthz.UnnamedHealthChecker { return trackedCheck{t} }

// Stopped reports whether Run has returned.
func (t *Tracked) Stopped() bool { return t.stopped.Load() }

type trackedCheck struct{ t *Tracked }

func (c trackedCheck) Check(*http.Request) error {
	if !c.t.stopped.Load() {
		return nil
	}
	if p := c.t.err.Load(); p != nil && *p != nil {
		return fmt.Errorf("controller %s stopped: %w", c.t.name, *p)
	}
	return fmt.Errorf("controller %s stopped", c.t.name)
}

// Done returns a channel closed when Run has returned.
func (t *Tracked) Done() <-chan struct{} { return t.done }

// Start runs r, the Runnable that c's New returned, in a new goroutine as
// the manager does: recorded in m's running_managed_controllers (upstream's
// controllers record themselves), logged when it stops, health-checked by
// the returned Tracked. testing/harness uses it to run controllers the way
// the command does. m may be nil.
func Start(ctx context.Context, c Controller, r Runnable, m *controllersmetrics.ControllerManagerMetrics) *Tracked {
	t := &Tracked{name: c.Name, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		defer t.stopped.Store(true)
		if m != nil && !c.upstream {
			m.ControllerStarted(c.Name)
			defer m.ControllerStopped(c.Name)
		}
		err := r.Run(ctx)
		if err != nil {
			t.err.Store(&err)
		}
		logger := klog.FromContext(ctx)
		switch {
		case err != nil:
			logger.Error(err, "Controller stopped", "controller", c.Name)
		case ctx.Err() == nil:
			logger.Error(nil, "Controller stopped before its context ended", "controller", c.Name)
		default:
			logger.V(1).Info("Controller stopped", "controller", c.Name)
		}
	}()
	return t
}
