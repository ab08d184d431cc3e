package framework

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/lb"
)

// WithLoadBalancers adds the load-balancer block: an lb.Reconciler over
// backend with opts, as the Provider's cloudprovider.LoadBalancer. The
// Provider's budget paces it unless opts.Budget is set. Address pools
// (opts.Pools) need a backend that implements lb.Lister.
func (b *Builder) WithLoadBalancers(backend lb.Backend, opts lb.Options) *Builder {
	switch {
	case b.lbSet:
		b.errs = append(b.errs, errors.New("WithLoadBalancers called twice"))
	case backend == nil:
		b.errs = append(b.errs, errors.New("WithLoadBalancers: nil Backend"))
	}
	b.lbBackend, b.lbOpts, b.lbSet = backend, opts, true
	return b
}

func (b *Builder) buildLoadBalancers(p *Provider, budget *cloudcall.Budget) error {
	if !b.lbSet || b.lbBackend == nil {
		return nil
	}
	opts := b.lbOpts
	if opts.Budget == nil {
		opts.Budget = budget
	}
	r, err := lb.NewReconciler(b.lbBackend, opts)
	if err != nil {
		return fmt.Errorf("load balancers: %w", err)
	}
	p.lb = r
	p.collectors = append(p.collectors, r.Collectors()...)
	return nil
}

// initializeLoadBalancers starts the lb block's Events, recorded with the
// service controller's identity (whose RBAC role may create Events).
func (p *Provider) initializeLoadBalancers(cb cloudprovider.ControllerClientBuilder, stop <-chan struct{}) {
	if p.lb == nil || cb == nil {
		return
	}
	client, err := cb.Client(serviceControllerClient)
	if err != nil {
		return
	}
	p.lb.Initialize(client, stop)
}

// serviceControllerClient is upstream's client name for the service
// controller.
const serviceControllerClient = "service-controller"

// Names of ccmkit's orphaned load balancer reaper in --controllers.
const (
	// LoadBalancerReaperName is its canonical name.
	LoadBalancerReaperName = "load-balancer-reaper"
	// LoadBalancerReaperAlias is its short name.
	LoadBalancerReaperAlias = "lb-reaper"
	// LoadBalancerReaperClient is its API client name (its own identity
	// for RBAC under --use-service-account-credentials).
	LoadBalancerReaperClient = "load-balancer-reaper"
)

// ReaperFlags are the orphan reaper's flags.
type ReaperFlags struct {
	GracePeriod time.Duration
	Period      time.Duration
	DryRun      bool
}

// AddFlags binds the reaper's flags to fs.
func (f *ReaperFlags) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&f.GracePeriod, "lb-reaper-grace-period", 10*time.Minute, "How long a load balancer owned by this cluster must have no Service (after the Service informer synced) before the reaper deletes it.")
	fs.DurationVar(&f.Period, "lb-reaper-period", 5*time.Minute, "Time between the reaper's passes over the cloud's load balancers.")
	fs.BoolVar(&f.DryRun, "lb-reaper-dry-run", false, "Report orphaned load balancers (Events, logs, metrics) without deleting them.")
}

// LoadBalancerReaperController returns ccmkit's orphaned load balancer
// reaper (lb.Reaper) as a table entry: name "load-balancer-reaper", alias
// "lb-reaper", its own API client, disabled by default (enable it with
// --controllers=*,load-balancer-reaper), flags bound to f (nil: new ones).
// Every command has it. Its Check refuses upstream's default
// --cluster-name "kubernetes" and a provider whose load-balancer block
// cannot list load balancers.
func LoadBalancerReaperController(f *ReaperFlags) Controller {
	if f == nil {
		f = &ReaperFlags{}
	}
	check := func(cfg *Config) error {
		if cfg == nil {
			return errors.New("load-balancer reaper: no configuration")
		}
		if cfg.ClusterName == lb.DefaultClusterName || cfg.ClusterName == "" {
			return fmt.Errorf("load-balancer reaper: refusing to run with --cluster-name=%q: two clusters left at upstream's default in one cloud account would delete each other's load balancers; set a unique --cluster-name", cfg.ClusterName)
		}
		if p := cfg.provider; p != nil {
			if p.lb == nil {
				return errors.New("load-balancer reaper: the provider has no load-balancer block (Builder.WithLoadBalancers)")
			}
		}
		return nil
	}
	return Controller{
		Name:              LoadBalancerReaperName,
		Aliases:           []string{LoadBalancerReaperAlias},
		ClientName:        LoadBalancerReaperClient,
		DisabledByDefault: true,
		Flags:             func(fs *pflag.FlagSet) { f.AddFlags(fs) },
		Check:             check,
		New: func(ctx context.Context, cc ControllerContext) (Runnable, error) {
			if err := check(cc.Config); err != nil {
				return nil, err
			}
			if cc.Provider == nil || cc.Provider.lb == nil {
				return nil, errors.New("load-balancer reaper: the provider has no load-balancer block (Builder.WithLoadBalancers)")
			}
			b := record.NewBroadcaster(record.WithContext(ctx))
			b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cc.Client.CoreV1().Events("")})
			rec := b.NewRecorder(scheme.Scheme, v1.EventSource{Component: LoadBalancerReaperName})
			reaper, err := cc.Provider.lb.NewReaper(cc.Informers, lb.ReaperOptions{
				ClusterName: cc.Config.ClusterName,
				GracePeriod: f.GracePeriod,
				Period:      f.Period,
				DryRun:      f.DryRun,
				Recorder:    rec,
			})
			if err != nil {
				b.Shutdown()
				return nil, err
			}
			return RunFunc(func(ctx context.Context) error {
				defer b.Shutdown()
				return reaper.Run(ctx)
			}), nil
		},
	}
}
