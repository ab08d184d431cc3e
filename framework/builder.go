package framework

import (
	"errors"
	"fmt"
	"regexp"

	cloudprovider "k8s.io/cloud-provider"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/lb"
	"github.com/ccmkit/ccmkit/routes"
)

// Builder composes blocks into a Provider. Chain methods record misuse
// instead of failing; Build reports all of it. A Builder is not safe for
// concurrent use; build once.
type Builder struct {
	name string
	errs []error

	instSrc  instances.Source
	instOpts instances.CacheOptions
	instSet  bool

	budgetOpts cloudcall.BudgetOptions
	budgetSet  bool

	routes cloudprovider.Routes

	lbBackend lb.Backend
	lbOpts    lb.Options
	lbSet     bool

	routesBackend routes.Backend // WithRoutes (routes.go)
	routesOpts    routes.Options
	routesSet     bool
}

// ErrBuild is wrapped by every error Build returns.
var ErrBuild = errors.New("framework: invalid provider")

var providerNameRE = regexp.MustCompile(`^[a-z][a-z0-9+.-]*$`)

// NewBuilder starts a provider named name: the --cloud-provider value and the
// scheme of node providerIDs ("<name>://<instance-id>"), so it must be a
// valid URI scheme (lower case letters, digits, '+', '.', '-').
func NewBuilder(name string) *Builder {
	b := &Builder{name: name}
	if !providerNameRE.MatchString(name) {
		b.errs = append(b.errs, fmt.Errorf("provider name %q must match %s (it is the providerID scheme)", name, providerNameRE))
	}
	return b
}

// WithInstances adds the instances block: src looks instances up (and lists
// them, if it implements instances.Lister), behind a Cache with opts. The
// Provider's budget paces it unless opts.Budget is set.
func (b *Builder) WithInstances(src instances.Source, opts instances.CacheOptions) *Builder {
	switch {
	case b.instSet:
		b.errs = append(b.errs, errors.New("WithInstances called twice"))
	case src == nil:
		b.errs = append(b.errs, errors.New("WithInstances: nil Source"))
	}
	b.instSrc, b.instOpts, b.instSet = src, opts, true
	return b
}

// WithBudget sets the cloud API budget shared by every block (default
// cloudcall's defaults).
func (b *Builder) WithBudget(opts cloudcall.BudgetOptions) *Builder {
	if b.budgetSet {
		b.errs = append(b.errs, errors.New("WithBudget called twice"))
	}
	b.budgetOpts, b.budgetSet = opts, true
	return b
}

// WithUpstreamRoutes plugs a raw cloudprovider.Routes in, for providers that
// have their own route code. The command then requires --cluster-cidr or
// --configure-cloud-routes=false.
func (b *Builder) WithUpstreamRoutes(r cloudprovider.Routes) *Builder {
	switch {
	case b.routes != nil:
		b.errs = append(b.errs, errors.New("WithUpstreamRoutes called twice"))
	case r == nil:
		b.errs = append(b.errs, errors.New("WithUpstreamRoutes: nil Routes"))
	}
	b.routes = r
	return b
}

// Build returns the Provider, or an error wrapping ErrBuild that joins every
// problem recorded by the chain and found while building blocks.
func (b *Builder) Build() (*Provider, error) {
	errs := append([]error(nil), b.errs...)
	budget, err := cloudcall.NewBudget(b.budgetOpts)
	if err != nil {
		errs = append(errs, err)
	}
	p := &Provider{name: b.name, budget: budget, routes: b.routes}
	if budget != nil {
		p.collectors = append(p.collectors, budget.Collectors()...)
	}
	if b.instSet && b.instSrc != nil {
		opts := b.instOpts
		if opts.Budget == nil {
			opts.Budget = budget
		}
		cache, err := instances.NewCache(b.instSrc, opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("instances: %w", err))
		} else {
			p.cache = cache
			p.instances = instances.NewInstancesV2(cache, b.name)
			p.collectors = append(p.collectors, cache.Collectors()...)
		}
	}
	if err := b.buildLoadBalancers(p, budget); err != nil {
		errs = append(errs, err)
	}
	if err := b.buildRoutes(p, budget); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w %q: %w", ErrBuild, b.name, errors.Join(errs...))
	}
	return p, nil
}
