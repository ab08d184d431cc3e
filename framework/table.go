package framework

import (
	"errors"
	"fmt"
	"slices"

	"k8s.io/cloud-provider/names"
)

// builtinControllers are ccmkit's controllers every command has.
func builtinControllers() []Controller {
	return []Controller{NodeIPAMController(nil), LoadBalancerReaperController(nil)}
}

// Controllers returns the controller table of a command with the given
// extra controllers: upstream's four controllers (cloud-node,
// cloud-node-lifecycle, service-lb, node-route; replaced where an extra
// controller says so), ccmkit's node IPAM controller, then the extras, in
// start order. It returns an error when a name or an alias collides with
// another, or a controller that Replaces names no upstream controller.
// NewCommand and testing/harness use the same table.
func Controllers(extra ...Controller) ([]Controller, error) {
	table, _, err := controllerTable(append(builtinControllers(), extra...))
	return table, err
}

// controllerTable merges upstream's controllers with ccmkit's and the
// provider's, and returns the table and the alias map (alias -> canonical).
func controllerTable(extra []Controller) ([]Controller, map[string]string, error) {
	table := upstreamControllers()
	aliases := names.CCMControllerAliases()
	var errs []error
	indexOf := func(name string) int {
		return slices.IndexFunc(table, func(c Controller) bool { return c.Name == name })
	}
	for _, c := range extra {
		if err := c.validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		i := indexOf(c.Name)
		switch {
		case c.Replaces && (i < 0 || !table[i].upstream):
			errs = append(errs, fmt.Errorf("controller %q replaces no upstream controller (upstream's: %s, %s, %s, %s)", c.Name,
				names.CloudNodeController, names.CloudNodeLifecycleController, names.ServiceLBController, names.NodeRouteController))
			continue
		case c.Replaces:
			if c.ClientName == "" {
				c.ClientName = table[i].ClientName
			}
		case i >= 0:
			errs = append(errs, fmt.Errorf("controller %q: name already taken (set Replaces to run it in place of upstream's)", c.Name))
			continue
		default:
			if other, dup := aliases[c.Name]; dup {
				errs = append(errs, fmt.Errorf("controller %q: name is an alias of %q", c.Name, other))
				continue
			}
		}
		var bad bool
		for _, a := range c.Aliases {
			if other, dup := aliases[a]; dup && other != c.Name {
				errs = append(errs, fmt.Errorf("controller %q: alias %q already names %q", c.Name, a, other))
				bad = true
			} else if indexOf(a) >= 0 || a == c.Name {
				errs = append(errs, fmt.Errorf("controller %q: alias %q is a controller name", c.Name, a))
				bad = true
			}
		}
		if bad {
			continue
		}
		for _, a := range c.Aliases {
			aliases[a] = c.Name
		}
		if c.Replaces {
			table[i] = c
		} else {
			table = append(table, c)
		}
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("framework: %w", errors.Join(errs...))
	}
	return table, aliases, nil
}
