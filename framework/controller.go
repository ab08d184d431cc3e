package framework

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/cloud-provider/app/config"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
)

// Controller is an extra controller run by the command beside upstream's.
type Controller struct {
	// Name is the canonical name, as used by --controllers.
	Name string
	// Aliases are other names --controllers accepts for it.
	Aliases []string
	// ClientName is the identity of its API client (its service account
	// with --use-service-account-credentials). Default: Name.
	ClientName string
	// Start starts the controller and returns without blocking; it stops
	// when ctx ends. An error is fatal to the manager, as upstream's.
	Start func(ctx context.Context, cc ControllerContext) error
}

// ControllerContext is what a Controller gets to run with.
type ControllerContext struct {
	// Client is the controller's API client.
	Client kubernetes.Interface
	// Informers is the manager's shared informer factory; it is started
	// after every controller has been started.
	Informers informers.SharedInformerFactory
	// Config is the manager's completed configuration (flags included).
	Config *config.CompletedConfig
	// Provider is the provider the controller serves.
	Provider *Provider
	// Metrics records controller start and stop.
	Metrics *controllersmetrics.ControllerManagerMetrics
}

func (c Controller) validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("controller without a name"))
	}
	if c.Start == nil {
		errs = append(errs, fmt.Errorf("controller %q has no Start function", c.Name))
	}
	return errors.Join(errs...)
}
