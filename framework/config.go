package framework

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/cloud-provider/app"
	"k8s.io/cloud-provider/app/config"
	"k8s.io/cloud-provider/options"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	genericcontrollermanager "k8s.io/controller-manager/app"

	"github.com/ccmkit/ccmkit/ipam"
)

type configCompleted = config.CompletedConfig

// Config is the completed configuration of a cloud-controller-manager,
// after its flags were parsed: what a provider constructor
// ([CommandOptions].NewProvider) and a [Controller] are built from.
// It is read-only once built; safe for concurrent reads.
type Config struct {
	// ProviderName is the provider's name (--cloud-provider).
	ProviderName string
	// ClusterName is --cluster-name (upstream's default is "kubernetes").
	ClusterName string
	// ClusterCIDRs is --cluster-cidr, parsed: none, one, or one per IP
	// family (dual-stack), in flag order.
	ClusterCIDRs []netip.Prefix
	// CloudConfigFile is --cloud-config, "" when unset.
	CloudConfigFile string
	// CloudConfig is the content of CloudConfigFile; nil when unset.
	CloudConfig []byte
	// Flags is the command's parsed flag set, the provider's own flags
	// included.
	Flags *pflag.FlagSet
	// Upstream is k8s.io/cloud-provider's completed configuration: the
	// component configuration, and, in the command, the API clients,
	// client builder and shared informers. From [ParseConfig] it has the
	// component configuration only.
	Upstream *config.CompletedConfig

	controllers []Controller
	aliases     map[string]string // alias -> canonical name
	disabled    sets.Set[string]
	provider    *Provider
}

// Controller returns the table entry named name, a canonical name or an
// alias (as --controllers accepts them).
func (c *Config) Controller(name string) (Controller, bool) {
	if canonical, ok := c.aliases[name]; ok {
		name = canonical
	}
	for _, ctl := range c.controllers {
		if ctl.Name == name {
			return ctl, true
		}
	}
	return Controller{}, false
}

// Controllers returns the controller table this configuration was parsed
// for: upstream's controllers (or their replacements), ccmkit's and the
// provider's, in start order.
func (c *Config) Controllers() []Controller { return slices.Clone(c.controllers) }

// Enabled reports whether --controllers enables the controller with the
// canonical name (DisabledByDefault controllers only when named).
func (c *Config) Enabled(name string) bool {
	//lint:ignore SA1019 upstream's IsControllerEnabled takes the deprecated sets.String
	return genericcontrollermanager.IsControllerEnabled(name, sets.String(c.disabled), c.Upstream.ComponentConfig.Generic.Controllers)
}

// Runs reports whether the controller is enabled and its Check does not
// say that it has nothing to do (an error wrapping ErrNotStarted). The
// provider must be known (the command's case) for checks that need it.
func (c *Config) Runs(name string) bool {
	if !c.Enabled(name) {
		return false
	}
	for _, ctl := range c.controllers {
		if ctl.Name == name {
			return ctl.Check == nil || !errors.Is(ctl.Check(c), ErrNotStarted)
		}
	}
	return false
}

// Provider returns the provider built for this configuration, or nil
// before it is built.
func (c *Config) Provider() *Provider { return c.provider }

// spec is one command's static shape: the upstream options, the controller
// table and every flag section.
type spec struct {
	providerName string
	version      string // --version
	s            *options.CloudControllerManagerOptions
	logOptions   *logs.Options
	controllers  []Controller
	constructors []string // canonical names, for upstream's option validation
	aliases      map[string]string
	disabled     sets.Set[string]
	upstream     cliflag.NamedFlagSets // upstream's sections
	extra        cliflag.NamedFlagSets // controllers' and the provider's sections
}

// newSpec builds the options, the controller table and the flags.
func newSpec(providerName string, extraControllers []Controller, providerFlags cliflag.NamedFlagSets, cmdName string) (*spec, error) {
	if !providerNameRE.MatchString(providerName) {
		return nil, fmt.Errorf("framework: provider name %q must match %s (it is the providerID scheme)", providerName, providerNameRE)
	}
	s, err := options.NewCloudControllerManagerOptions()
	if err != nil {
		return nil, fmt.Errorf("framework: upstream options: %w", err)
	}
	s.KubeCloudShared.CloudProvider.Name = providerName
	sp := &spec{providerName: providerName, s: s, logOptions: logs.NewOptions(), disabled: sets.New[string]()}
	sp.controllers, sp.aliases, err = controllerTable(append(builtinControllers(), extraControllers...))
	if err != nil {
		return nil, err
	}
	for _, c := range sp.controllers {
		sp.constructors = append(sp.constructors, c.Name)
		if c.DisabledByDefault {
			sp.disabled.Insert(c.Name)
		}
	}
	sp.upstream = s.Flags(sp.constructors, sets.List(sp.disabled), sp.aliases, app.AllWebhooks, app.DisabledByDefaultWebhooks)
	global := sp.upstream.FlagSet("global")
	// Not verflag.AddFlags: it binds a package-level variable, so a
	// --version seen by one command would stick to every later one in the
	// process.
	global.StringVar(&sp.version, "version", "false", "Print version information (this provider's, ccmkit's and Kubernetes') and quit; --version=raw prints the same.")
	global.Lookup("version").NoOptDefVal = "true"
	logsapi.AddFlags(sp.logOptions, global)
	globalflag.AddGlobalFlags(global, cmdName, logs.SkipLoggingConfigurationFlags())
	if f := sp.upstream.FlagSet("generic").Lookup("allocate-node-cidrs"); f != nil {
		f.Usage = "Should CIDRs for Pods be allocated and set on the cloud provider (by the node IPAM controller, node-ipam-controller). " +
			"With --cidr-allocator-type=RangeAllocator (the default) it requires --cluster-cidr; with CloudAllocator the CIDRs come from the cloud."
	}

	seen := map[string]string{}
	for _, section := range sp.upstream.Order {
		sp.upstream.FlagSets[section].VisitAll(func(f *pflag.Flag) { seen[f.Name] = "upstream section " + section })
	}
	var errs []error
	add := func(section string, fs *pflag.FlagSet, owner string) {
		fs.VisitAll(func(f *pflag.Flag) {
			if other, dup := seen[f.Name]; dup {
				errs = append(errs, fmt.Errorf("framework: flag --%s of %s is already defined by %s", f.Name, owner, other))
				return
			}
			seen[f.Name] = owner
			sp.extra.FlagSet(section).AddFlag(f)
		})
	}
	for _, c := range sp.controllers {
		if c.Flags == nil {
			continue
		}
		fs := pflag.NewFlagSet(c.Name, pflag.ContinueOnError)
		c.Flags(fs)
		add(c.Name, fs, "controller "+c.Name)
	}
	for _, section := range providerFlags.Order {
		if fs := providerFlags.FlagSets[section]; fs != nil {
			add(section, fs, "the provider (section "+section+")")
		}
	}
	return sp, errors.Join(errs...)
}

// flagSet returns a new flag set holding every flag of sp.
func (sp *spec) addFlags(fs *pflag.FlagSet) {
	for _, section := range sp.upstream.Order {
		fs.AddFlagSet(sp.upstream.FlagSets[section])
	}
	for _, section := range sp.extra.Order {
		fs.AddFlagSet(sp.extra.FlagSets[section])
	}
}

// complete turns the parsed options into a Config. With clients, it builds
// upstream's whole configuration (API clients, serving, authentication);
// without, the component configuration only, for tests.
func (sp *spec) complete(fs *pflag.FlagSet, withClients bool) (*Config, error) {
	s := sp.s
	var upstream *config.Config
	if withClients {
		c, err := s.Config(sp.constructors, sets.List(sp.disabled), sp.aliases, app.AllWebhooks, app.DisabledByDefaultWebhooks)
		if err != nil {
			return nil, err
		}
		upstream = c
	} else {
		if err := s.Validate(sp.constructors, sets.List(sp.disabled), sp.aliases, app.AllWebhooks, app.DisabledByDefaultWebhooks); err != nil {
			return nil, err
		}
		upstream = &config.Config{}
		cc := &upstream.ComponentConfig
		if err := s.Generic.ApplyTo(&cc.Generic, sp.constructors, sets.List(sp.disabled), sp.aliases); err != nil {
			return nil, err
		}
		if err := s.KubeCloudShared.ApplyTo(&cc.KubeCloudShared); err != nil {
			return nil, err
		}
		if err := s.ServiceController.ApplyTo(&cc.ServiceController); err != nil {
			return nil, err
		}
		if err := s.NodeController.ApplyTo(&cc.NodeController); err != nil {
			return nil, err
		}
		if err := s.NodeLifecycleController.ApplyTo(&cc.NodeLifecycleController); err != nil {
			return nil, err
		}
		cc.NodeStatusUpdateFrequency = s.NodeStatusUpdateFrequency
	}
	shared := upstream.ComponentConfig.KubeCloudShared
	cfg := &Config{
		ProviderName:    sp.providerName,
		ClusterName:     shared.ClusterName,
		CloudConfigFile: shared.CloudProvider.CloudConfigFile,
		Flags:           fs,
		Upstream:        upstream.Complete(),
		controllers:     sp.controllers,
		aliases:         sp.aliases,
		disabled:        sp.disabled,
	}
	if shared.CloudProvider.Name != sp.providerName {
		return nil, fmt.Errorf("--cloud-provider=%q, but this binary is the %q provider", shared.CloudProvider.Name, sp.providerName)
	}
	if s := strings.TrimSpace(shared.ClusterCIDR); s != "" {
		cidrs, err := ipam.ParseCIDRs(s)
		if err != nil {
			return nil, fmt.Errorf("--cluster-cidr: %w", err)
		}
		if len(cidrs) > 2 || (len(cidrs) == 2 && cidrs[0].Addr().Is4() == cidrs[1].Addr().Is4()) {
			return nil, fmt.Errorf("--cluster-cidr %q: want one CIDR, or one IPv4 and one IPv6 CIDR (dual-stack)", s)
		}
		cfg.ClusterCIDRs = cidrs
	}
	if cfg.CloudConfigFile != "" {
		b, err := os.ReadFile(cfg.CloudConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--cloud-config: %w", err)
		}
		cfg.CloudConfig = b
	}
	return cfg, nil
}

// check runs every enabled controller's Check, and validates the leader
// migration configuration against the table. Call it once the provider is
// known.
func (sp *spec) check(cfg *Config) error {
	var errs []error
	for _, c := range cfg.controllers {
		if c.Check == nil || !cfg.Enabled(c.Name) {
			continue
		}
		if err := c.Check(cfg); err != nil && !errors.Is(err, ErrNotStarted) {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ParseConfig parses args (command-line flags, such as
// "--cluster-cidr=10.0.0.0/16") as the command built with opts would, and
// returns the configuration with upstream's component configuration only:
// no API clients, no serving. testing/harness builds its controllers from
// it. opts.NewProvider and opts.Provider are not used; flags are validated
// as the command validates them, except checks that need the provider.
func ParseConfig(opts CommandOptions, args []string) (*Config, error) {
	name := opts.providerName()
	sp, err := newSpec(name, opts.Controllers, opts.Flags, opts.commandName(name))
	if err != nil {
		return nil, err
	}
	fs := pflag.NewFlagSet(opts.commandName(name), pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	sp.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg, err := sp.complete(fs, false)
	if err != nil {
		return nil, err
	}
	cfg.provider = opts.Provider
	return cfg, nil
}
