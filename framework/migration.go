package framework

import (
	"errors"
	"fmt"

	"k8s.io/cloud-provider/names"
	cmconfig "k8s.io/controller-manager/config"
	cmconfigv1 "k8s.io/controller-manager/config/v1"
	migrationconfig "k8s.io/controller-manager/pkg/leadermigration/config"
	"sigs.k8s.io/yaml"
)

// migrationComponent is the component name k8s.io/cloud-provider/app gives
// the cloud-controller-manager in leader migration.
const migrationComponent = "cloud-controller-manager"

// migratable are the controllers that can move between
// kube-controller-manager and a cloud-controller-manager, by the canonical
// names both managers use. Controllers only a CCM has (cloud-node) stay under
// the main lock: under the migration lock, node initialization would stop
// while the other manager holds it.
var migratable = []string{
	names.CloudNodeLifecycleController,
	names.ServiceLBController,
	names.NodeRouteController,
	NodeIPAMControllerName,
}

// LeaderMigrationConfig returns the leader-migration configuration the
// command uses with --enable-leader-migration and no
// --leader-migration-config: upstream's lease name and lock, and the
// controllers that can move between kube-controller-manager and this
// binary, named canonically (upstream's default names "route-controller" and
// "service-controller", which match no canonical name, so those two would
// silently stay under the main lock), each for component "*". Of those, only
// the ones that run with cfg are listed (node-ipam-controller only with
// --allocate-node-cidrs, node-route-controller only when routes are
// configured).
func LeaderMigrationConfig(cfg *Config) *cmconfig.LeaderMigrationConfiguration {
	def := migrationconfig.DefaultLeaderMigrationConfiguration()
	out := &cmconfig.LeaderMigrationConfiguration{LeaderName: def.LeaderName, ResourceLock: def.ResourceLock}
	for _, name := range migratable {
		if cfg.Runs(name) {
			out.ControllerLeaders = append(out.ControllerLeaders, cmconfig.ControllerLeaderConfiguration{Name: name, Component: "*"})
		}
	}
	return out
}

// RenderLeaderMigrationConfig renders c as the YAML file
// --leader-migration-config reads (controllermanager.config.k8s.io/v1), for
// operators who write the configuration of both managers. Version v1 has no
// resource lock field: it always uses leases.
func RenderLeaderMigrationConfig(c *cmconfig.LeaderMigrationConfiguration) ([]byte, error) {
	out := cmconfigv1.LeaderMigrationConfiguration{
		LeaderName: c.LeaderName,
	}
	out.APIVersion = cmconfigv1.SchemeGroupVersion.String()
	out.Kind = "LeaderMigrationConfiguration"
	for _, l := range c.ControllerLeaders {
		out.ControllerLeaders = append(out.ControllerLeaders, cmconfigv1.ControllerLeaderConfiguration{Name: l.Name, Component: l.Component})
	}
	return yaml.Marshal(out)
}

// applyLeaderMigration replaces upstream's default migration configuration
// with LeaderMigrationConfig, or checks a user-supplied one: an entry for
// this binary's component ("cloud-controller-manager") must name a
// controller this binary runs; an entry for every component ("*") must name
// one this binary knows (a name it does not know is a typo or an alias,
// such as upstream's "route-controller", and would silently stay under the
// main lock).
func applyLeaderMigration(cfg *Config, userFile string) error {
	generic := &cfg.Upstream.ComponentConfig.Generic
	if !generic.LeaderMigrationEnabled {
		return nil
	}
	if userFile == "" {
		generic.LeaderMigration = *LeaderMigrationConfig(cfg)
		return nil
	}
	var errs []error
	for _, l := range generic.LeaderMigration.ControllerLeaders {
		known := false
		for _, c := range cfg.controllers {
			known = known || c.Name == l.Name
		}
		switch {
		case l.Component != migrationComponent && l.Component != "*":
			continue
		case !known:
			errs = append(errs, fmt.Errorf("controller %q (component %q) is not a controller of this binary; use canonical names (%s)", l.Name, l.Component, cfg.controllerNames()))
		case l.Component == migrationComponent && !cfg.Runs(l.Name):
			errs = append(errs, fmt.Errorf("controller %q (component %q) does not run with these flags", l.Name, l.Component))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("--leader-migration-config %s: %w", userFile, errors.Join(errs...))
	}
	return nil
}

func (c *Config) controllerNames() string {
	var s string
	for i, ctl := range c.controllers {
		if i > 0 {
			s += ", "
		}
		s += ctl.Name
	}
	return s
}
