package framework

import (
	"context"
	"errors"
	"fmt"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/routes"
)

// routesBlock is the routes block of a Provider built with WithRoutes.
type routesBlock struct {
	backend routes.Backend
	opts    routes.Options
	adapter *routes.Adapter
}

// WithRoutes adds the routes block over backend. By default ccmkit's route
// controller (routes.Controller) runs under upstream's name
// node-route-controller (client route-controller, alias route): it applies
// routes.Diff's plan in as few writes as the backend allows. With
// opts.UpstreamController, k8s.io/cloud-provider's route controller runs
// instead over the block's routes.Adapter, whose Batcher coalesces its
// concurrent calls when backend implements routes.Applier. Either way the
// Provider's Routes() is the Adapter, the provider's budget paces the calls
// unless opts.Budget is set, and the command requires --cluster-cidr (or
// --configure-cloud-routes=false). Using it with WithUpstreamRoutes, or
// twice, is recorded misuse.
func (b *Builder) WithRoutes(backend routes.Backend, opts routes.Options) *Builder {
	switch {
	case b.routesSet:
		b.errs = append(b.errs, errors.New("WithRoutes called twice"))
	case backend == nil:
		b.errs = append(b.errs, errors.New("WithRoutes: nil Backend"))
	}
	b.routesBackend, b.routesOpts, b.routesSet = backend, opts, true
	return b
}

// buildRoutes builds the routes block into p.
func (b *Builder) buildRoutes(p *Provider, budget *cloudcall.Budget) error {
	if !b.routesSet || b.routesBackend == nil {
		return nil
	}
	if b.routes != nil {
		return errors.New("WithRoutes and WithUpstreamRoutes both set: use one (WithRoutes with routes.Options.UpstreamController runs upstream's route controller over ccmkit's adapter)")
	}
	opts := b.routesOpts
	if opts.Budget == nil {
		opts.Budget = budget
	}
	if opts.Metrics == nil {
		opts.Metrics = routes.NewMetrics()
	}
	a, err := routes.NewAdapter(b.routesBackend, opts)
	if err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	p.routes = a
	p.routesBlock = &routesBlock{backend: b.routesBackend, opts: opts, adapter: a}
	p.collectors = append(p.collectors, opts.Metrics.Collectors()...)
	return nil
}

// RouteAdapter returns the routes block's adapter, or nil without
// WithRoutes.
func (p *Provider) RouteAdapter() *routes.Adapter {
	if p.routesBlock == nil {
		return nil
	}
	return p.routesBlock.adapter
}

// withCCMKitRoutes wraps upstream's node-route-controller entry: for a
// Provider built with WithRoutes (and not UpstreamController), ccmkit's
// route controller runs under the entry's name, client and aliases, behind
// the same guards (--configure-cloud-routes, the cluster CIDRs, checked by
// the entry's Check) and with --route-reconciliation-period as its period.
// The table is built before the provider (flags come first), so the choice
// is made when the controller is set up.
func withCCMKitRoutes(up Controller) Controller {
	upstreamNew := up.New
	up.New = func(ctx context.Context, cc ControllerContext) (Runnable, error) {
		if cc.Provider == nil || cc.Provider.routesBlock == nil || cc.Provider.routesBlock.opts.UpstreamController {
			return upstreamNew(ctx, cc)
		}
		cfg, err := upstreamConfig(cc)
		if err != nil {
			return nil, err
		}
		shared := cfg.ComponentConfig.KubeCloudShared
		if !shared.ConfigureCloudRoutes {
			return nil, NotStarted("--configure-cloud-routes is false")
		}
		if _, err := routeCIDRs(cc.Config); err != nil {
			return nil, err
		}
		blk := cc.Provider.routesBlock
		c, err := routes.NewController(blk.backend, cc.Client, cc.Informers.Core().V1().Nodes(), routes.ControllerConfig{
			ClusterName:  shared.ClusterName,
			ClusterCIDRs: cc.Config.ClusterCIDRs,
			Period:       shared.RouteReconciliationPeriod.Duration,
		}, blk.opts)
		if err != nil {
			return nil, err
		}
		return RunFunc(func(ctx context.Context) error {
			// Recorded under upstream's name, as upstream's route
			// controller records itself.
			if cc.Metrics != nil {
				cc.Metrics.ControllerStarted("route")
				defer cc.Metrics.ControllerStopped("route")
			}
			return c.Run(ctx)
		}), nil
	}
	return up
}
