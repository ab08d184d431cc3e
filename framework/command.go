package framework

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/spf13/cobra"
	cloudprovider "k8s.io/cloud-provider"
	"k8s.io/cloud-provider/app"
	"k8s.io/cloud-provider/app/config"
	"k8s.io/cloud-provider/names"
	"k8s.io/cloud-provider/options"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/metrics/legacyregistry"
	genericcontrollermanager "k8s.io/controller-manager/app"
	"k8s.io/controller-manager/controller"
	"k8s.io/klog/v2"
)

// CommandOptions configures NewCommand. The zero value means defaults.
type CommandOptions struct {
	// Name is the command name (default "<provider>-cloud-controller-manager").
	Name string
	// AdditionalFlags are the provider's own flags, shown in --help.
	AdditionalFlags cliflag.NamedFlagSets
	// Stop ends the manager when closed (default: never; the process exits
	// on SIGTERM as upstream's does).
	Stop <-chan struct{}
}

// NewCommand returns the cloud-controller-manager command for p: upstream's
// command (all its flags, leader election and migration, /healthz, /metrics)
// with p as the cloud, --cloud-provider preset to p's name, upstream's
// controllers plus ccmkit's node IPAM controller (NodeIPAMController, its
// flags in a "node-ipam-controller" section) and p's extra controllers, and
// p's metrics registered. It returns an error if an extra controller's name
// or alias, or a provider flag, collides with another one.
func NewCommand(p *Provider, opts CommandOptions) (*cobra.Command, error) {
	if p == nil {
		return nil, errors.New("framework: NewCommand with nil Provider")
	}
	s, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		return nil, fmt.Errorf("framework: upstream options: %w", err)
	}
	s.KubeCloudShared.CloudProvider.Name = p.name

	ipamOpts := &NodeIPAMOptions{}
	constructors, aliases, err := controllerTable(p, NodeIPAMController(ipamOpts))
	if err != nil {
		return nil, err
	}
	flags, err := withNodeIPAMFlags(opts.AdditionalFlags, ipamOpts)
	if err != nil {
		return nil, err
	}
	for _, c := range p.collectors {
		// AlreadyRegistered only happens when a process builds two commands
		// for one provider; the metrics are served either way.
		_ = legacyregistry.Register(c)
	}
	stop := opts.Stop
	if stop == nil {
		stop = make(chan struct{})
	}
	initCloud := func(*config.CompletedConfig) cloudprovider.Interface { return p }
	cmd := app.NewCloudControllerManagerCommand(s, initCloud, constructors, aliases, flags, stop)
	cmd.Use = opts.Name
	if cmd.Use == "" {
		cmd.Use = p.name + "-cloud-controller-manager"
	}
	run := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkOptions(p, s); err != nil {
			return err
		}
		return run(cmd, args)
	}
	return cmd, nil
}

// checkOptions reports, before upstream would exit fatally, flag
// combinations the provider cannot run with.
func checkOptions(p *Provider, s *options.CloudControllerManagerOptions) error {
	shared := s.KubeCloudShared
	if shared.CloudProvider.Name != p.name {
		return fmt.Errorf("--cloud-provider=%q, but this binary is the %q provider", shared.CloudProvider.Name, p.name)
	}
	_, hasRoutes := p.Routes()
	routesOn := genericcontrollermanager.IsControllerEnabled(names.NodeRouteController, app.ControllersDisabledByDefault, canonicalControllers(s.Generic.Controllers))
	if hasRoutes && routesOn && shared.ConfigureCloudRoutes && shared.ClusterCIDR == "" {
		return fmt.Errorf("provider %q configures cloud routes: set --cluster-cidr to the pod network, or --configure-cloud-routes=false (or --controllers=*,-%s) to turn routes off", p.name, names.NodeRouteController)
	}
	return nil
}

// canonicalControllers rewrites upstream's aliases in a --controllers value
// ("route", "-route") to canonical names, as the manager does later.
func canonicalControllers(list []string) []string {
	aliases := names.CCMControllerAliases()
	out := make([]string, len(list))
	for i, c := range list {
		neg := strings.HasPrefix(c, "-")
		name := strings.TrimPrefix(c, "-")
		if canonical, ok := aliases[name]; ok {
			name = canonical
		}
		if neg {
			name = "-" + name
		}
		out[i] = name
	}
	return out
}

// controllerTable copies upstream's controller constructors and aliases and
// adds ccmkit's builtin controllers and p's extra controllers.
func controllerTable(p *Provider, builtin ...Controller) (map[string]app.ControllerInitFuncConstructor, map[string]string, error) {
	constructors := maps.Clone(app.DefaultInitFuncConstructors)
	aliases := names.CCMControllerAliases()
	var errs []error
	for _, c := range append(builtin, p.controllers...) {
		if _, dup := constructors[c.Name]; dup {
			errs = append(errs, fmt.Errorf("controller %q: name already taken", c.Name))
			continue
		}
		if _, dup := aliases[c.Name]; dup {
			errs = append(errs, fmt.Errorf("controller %q: name is an alias of %q", c.Name, aliases[c.Name]))
			continue
		}
		clientName := c.ClientName
		if clientName == "" {
			clientName = c.Name
		}
		constructors[c.Name] = app.ControllerInitFuncConstructor{
			InitContext: app.ControllerInitContext{ClientName: clientName},
			Constructor: initFuncFor(c, p),
		}
		for _, a := range c.Aliases {
			if _, dup := constructors[a]; dup {
				errs = append(errs, fmt.Errorf("controller %q: alias %q is a controller name", c.Name, a))
				continue
			}
			if other, dup := aliases[a]; dup {
				errs = append(errs, fmt.Errorf("controller %q: alias %q already names %q", c.Name, a, other))
				continue
			}
			aliases[a] = c.Name
		}
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("framework: %w", errors.Join(errs...))
	}
	return constructors, aliases, nil
}

func initFuncFor(c Controller, p *Provider) app.InitFuncConstructor {
	return func(initCtx app.ControllerInitContext, cfg *config.CompletedConfig, _ cloudprovider.Interface) app.InitFunc {
		return func(ctx context.Context, cmctx genericcontrollermanager.ControllerContext) (controller.Interface, bool, error) {
			client, err := cfg.ClientBuilder.Client(initCtx.ClientName)
			if err != nil {
				return nil, false, fmt.Errorf("controller %q: client: %w", c.Name, err)
			}
			klog.FromContext(ctx).V(1).Info("Starting ccmkit controller", "controller", c.Name)
			err = c.Start(ctx, ControllerContext{
				Client:    client,
				Informers: cfg.SharedInformers,
				Config:    cfg,
				Provider:  p,
				Metrics:   cmctx.ControllerManagerMetrics,
			})
			if err != nil {
				return nil, false, fmt.Errorf("controller %q: %w", c.Name, err)
			}
			return nil, true, nil
		}
	}
}
