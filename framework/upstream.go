package framework

import (
	"context"
	"errors"
	"fmt"
	"net"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	cloudnode "k8s.io/cloud-provider/controllers/node"
	nodelifecycle "k8s.io/cloud-provider/controllers/nodelifecycle"
	routecontroller "k8s.io/cloud-provider/controllers/route"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	"k8s.io/cloud-provider/names"
	_ "k8s.io/controller-manager/pkg/features/register" // the route controller reads its feature gate
)

// Upstream controllers' API client names, as k8s.io/cloud-provider/app
// registers them (the cloud-node and node-lifecycle controllers share the
// node-controller identity).
const (
	nodeClient    = "node-controller"
	serviceClient = "service-controller"
	routeClient   = "route-controller"
)

// upstreamControllers returns k8s.io/cloud-provider's four controllers as
// table entries, built from the configuration the same way
// k8s.io/cloud-provider/app does, except that Run blocks (so the manager and
// the harness can wait for it) and a missing or bad --cluster-cidr is an
// error instead of the route controller's klog.Fatal.
func upstreamControllers() []Controller {
	return []Controller{
		{
			Name:       names.CloudNodeController,
			ClientName: nodeClient,
			upstream:   true,
			New: func(_ context.Context, cc ControllerContext) (Runnable, error) {
				up, err := upstreamConfig(cc)
				if err != nil {
					return nil, err
				}
				cfg := up.ComponentConfig
				c, err := cloudnode.NewCloudNodeController(cc.Informers.Core().V1().Nodes(), cc.Client, cc.Cloud,
					cfg.NodeStatusUpdateFrequency.Duration, cfg.NodeController.ConcurrentNodeSyncs, cfg.NodeController.ConcurrentNodeStatusUpdates)
				if err != nil {
					return nil, NotStarted(err.Error()) // upstream logs and skips it too
				}
				return RunFunc(func(ctx context.Context) error { c.RunWithContext(ctx, cc.Metrics); return nil }), nil
			},
		},
		{
			Name:       names.CloudNodeLifecycleController,
			ClientName: nodeClient,
			upstream:   true,
			New: func(_ context.Context, cc ControllerContext) (Runnable, error) {
				up, err := upstreamConfig(cc)
				if err != nil {
					return nil, err
				}
				cfg := up.ComponentConfig.NodeLifecycleController
				c, err := nodelifecycle.NewCloudNodeLifecycleController(cc.Informers.Core().V1().Nodes(), cc.Client, cc.Cloud,
					cfg.NodeMonitorPeriod.Duration, int(cfg.ConcurrentNodeLifecycleSyncs))
				if err != nil {
					return nil, NotStarted(err.Error())
				}
				return RunFunc(func(ctx context.Context) error { c.Run(ctx, cc.Metrics); return nil }), nil
			},
		},
		{
			Name:       names.ServiceLBController,
			ClientName: serviceClient,
			upstream:   true,
			Check: func(cfg *Config) error {
				if cfg.provider != nil {
					if _, ok := cfg.provider.LoadBalancer(); !ok {
						return NotStarted("the provider has no load balancers")
					}
				}
				return nil
			},
			New: func(_ context.Context, cc ControllerContext) (Runnable, error) {
				up, err := upstreamConfig(cc)
				if err != nil {
					return nil, err
				}
				// Checked before New, which otherwise starts its queues'
				// goroutines and leaks them when it fails for this reason.
				if _, ok := cc.Cloud.LoadBalancer(); !ok {
					return nil, NotStarted("the cloud has no load balancers")
				}
				c, err := servicecontroller.New(cc.Cloud, cc.Client, cc.Informers.Core().V1().Services(), cc.Informers.Core().V1().Nodes(),
					up.ComponentConfig.KubeCloudShared.ClusterName, utilfeature.DefaultFeatureGate)
				if err != nil {
					// Upstream's only error: the cloud has no load balancers.
					return nil, NotStarted(err.Error())
				}
				workers := int(up.ComponentConfig.ServiceController.ConcurrentServiceSyncs)
				return RunFunc(func(ctx context.Context) error { c.Run(ctx, workers, cc.Metrics); return nil }), nil
			},
		},
		withCCMKitRoutes(Controller{ // ccmkit's route controller for WithRoutes (routes.go)
			Name:       names.NodeRouteController,
			ClientName: routeClient,
			upstream:   true,
			Check: func(cfg *Config) error {
				if !cfg.Upstream.ComponentConfig.KubeCloudShared.ConfigureCloudRoutes {
					return NotStarted("--configure-cloud-routes is false")
				}
				if cfg.provider != nil {
					if _, ok := cfg.provider.Routes(); !ok {
						return NotStarted("the provider has no routes")
					}
				}
				_, err := routeCIDRs(cfg)
				return err
			},
			New: func(_ context.Context, cc ControllerContext) (Runnable, error) {
				up, err := upstreamConfig(cc)
				if err != nil {
					return nil, err
				}
				shared := up.ComponentConfig.KubeCloudShared
				if !shared.ConfigureCloudRoutes {
					return nil, NotStarted("--configure-cloud-routes is false")
				}
				routes, ok := cc.Cloud.Routes()
				if !ok {
					return nil, NotStarted("the provider has no routes")
				}
				cidrs, err := routeCIDRs(cc.Config)
				if err != nil {
					return nil, err
				}
				c, err := routecontroller.New(routes, cc.Client, cc.Informers.Core().V1().Nodes(), shared.ClusterName, cidrs)
				if err != nil {
					return nil, err
				}
				period := shared.RouteReconciliationPeriod.Duration
				return RunFunc(func(ctx context.Context) error { c.Run(ctx, period, cc.Metrics); return nil }), nil
			},
		}),
	}
}

func upstreamConfig(cc ControllerContext) (*configCompleted, error) {
	if cc.Config == nil || cc.Config.Upstream == nil {
		return nil, errors.New("no manager configuration")
	}
	if cc.Cloud == nil {
		return nil, errors.New("no cloud")
	}
	return cc.Config.Upstream, nil
}

// routeCIDRs returns the cluster CIDRs for the route controller, which
// exits fatally without them.
func routeCIDRs(cfg *Config) ([]*net.IPNet, error) {
	if len(cfg.ClusterCIDRs) == 0 {
		return nil, fmt.Errorf("the route controller (%s) needs --cluster-cidr (the pod network); set it, or turn routes off with --configure-cloud-routes=false or --controllers=*,-%s", names.NodeRouteController, names.NodeRouteController)
	}
	out := make([]*net.IPNet, len(cfg.ClusterCIDRs))
	for i, p := range cfg.ClusterCIDRs {
		out[i] = &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	return out, nil
}
