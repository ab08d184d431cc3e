package framework

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/cloud-provider/app"
	"k8s.io/component-base/cli"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // rest_client_* and leader_election_master_status, as upstream's main
	_ "k8s.io/component-base/metrics/prometheus/version"  // kubernetes_build_info, as upstream's main
	"k8s.io/component-base/term"
	"k8s.io/component-base/version"
	genericcontrollermanager "k8s.io/controller-manager/app"
	"k8s.io/controller-manager/controller"
	"k8s.io/klog/v2"
)

// CommandOptions configures NewCommand. Set ProviderName and NewProvider
// (the binary's case) or Provider (a pre-built provider, for tests).
type CommandOptions struct {
	// ProviderName is the provider's name: the --cloud-provider value and
	// the providerID scheme. Required with NewProvider; with Provider,
	// Provider's name.
	ProviderName string
	// NewProvider builds the provider from the completed configuration,
	// after the flags are parsed and before leader election: read
	// cfg.CloudConfig (the --cloud-config file) and the provider's own
	// flags, check credentials, and return the Provider built with a
	// Builder. An error ends the command with that error (exit status 1)
	// before any controller starts.
	NewProvider func(ctx context.Context, cfg *Config) (*Provider, error)
	// Provider is a pre-built provider, used instead of NewProvider.
	Provider *Provider
	// Name is the command name (default "<provider>-cloud-controller-manager").
	Name string
	// Version is the provider's version, printed by --version and logged
	// at start with ccmkit's and Kubernetes' versions (default: the main
	// module's version from the build information).
	Version string
	// Flags are the provider's own flags, in named sections shown in
	// --help; they are parsed before NewProvider is called.
	Flags cliflag.NamedFlagSets
	// Controllers are the provider's own controllers, run beside
	// upstream's and ccmkit's (or in place of an upstream controller, with
	// Replaces).
	Controllers []Controller
	// Stop ends the manager when closed (default: never; the process
	// exits on SIGTERM, as upstream's does).
	Stop <-chan struct{}
}

func (o CommandOptions) providerName() string {
	if o.Provider != nil {
		return o.Provider.name
	}
	return o.ProviderName
}

func (o CommandOptions) commandName(provider string) string {
	if o.Name != "" {
		return o.Name
	}
	return provider + "-cloud-controller-manager"
}

// NewCommand returns the cloud-controller-manager command: upstream's flags,
// leader election and migration, /healthz and /metrics (with the standard
// manager metrics), running the controller table ([Controllers]) against
// the provider that opts.NewProvider builds once the flags are parsed.
//
// Before leader election the command checks every flag it can (each
// enabled controller's Check: node IPAM's flags, --cluster-cidr for
// routes), builds the provider and checks a --leader-migration-config, so a
// bad flag stops every replica at start, not only the elected one. With
// --enable-leader-migration and no --leader-migration-config it uses
// [LeaderMigrationConfig]. Note that upstream's manager never releases its
// lease on exit: a rolling update leaves the controllers idle for about
// the lease duration (--leader-elect-lease-duration, 15 s by default).
//
// NewCommand returns an error (before any flag is parsed) when a controller
// name, alias or flag collides with another, or the options are
// incomplete. Run the command with [Run].
func NewCommand(opts CommandOptions) (*cobra.Command, error) {
	name := opts.providerName()
	switch {
	case opts.Provider == nil && opts.NewProvider == nil:
		return nil, errors.New("framework: CommandOptions needs NewProvider (or a pre-built Provider)")
	case opts.Provider != nil && opts.NewProvider != nil:
		return nil, errors.New("framework: CommandOptions has both NewProvider and Provider")
	case opts.Provider != nil && opts.ProviderName != "" && opts.ProviderName != name:
		return nil, fmt.Errorf("framework: CommandOptions.ProviderName %q, but the Provider is %q", opts.ProviderName, name)
	}
	cmdName := opts.commandName(name)
	sp, err := newSpec(name, opts.Controllers, opts.Flags, cmdName)
	if err != nil {
		return nil, err
	}
	versions := versionInfo(opts.Version)
	cmd := &cobra.Command{
		Use: cmdName,
		Long: fmt.Sprintf("%s is the cloud-controller-manager of the %q cloud provider: the Kubernetes controllers\n"+
			"that talk to the cloud (node initialization and lifecycle, load balancers, routes, node IPAM).\n%s", cmdName, name, versions),
		Args: func(cmd *cobra.Command, args []string) error {
			for _, arg := range args {
				if len(arg) > 0 {
					return fmt.Errorf("%q does not take any arguments, got %q", cmd.CommandPath(), args)
				}
			}
			return nil
		},
		// Flag errors print the usage; every other error prints once,
		// without it.
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, sp, opts, versions)
		},
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		c.SilenceUsage = false
		return err
	})
	sp.addFlags(cmd.Flags())
	cols, _, _ := term.TerminalSize(cmd.OutOrStdout())
	cmd.SetUsageFunc(func(cmd *cobra.Command) error {
		fmt.Fprintf(cmd.OutOrStderr(), "Usage:\n  %s\n", cmd.UseLine())
		cliflag.PrintSections(cmd.OutOrStderr(), sp.upstream, cols)
		cliflag.PrintSections(cmd.OutOrStderr(), sp.extra, cols)
		return nil
	})
	cmd.SetHelpFunc(func(cmd *cobra.Command, _ []string) {
		fmt.Fprintf(cmd.OutOrStdout(), "%s\n\nUsage:\n  %s\n", cmd.Long, cmd.UseLine())
		cliflag.PrintSections(cmd.OutOrStdout(), sp.upstream, cols)
		cliflag.PrintSections(cmd.OutOrStdout(), sp.extra, cols)
	})
	return cmd, nil
}

// Run runs cmd as k8s.io/component-base/cli.Run does (flag names normalised,
// logging flushed, each error printed once, usage only for flag errors) and
// returns the exit status: the one call a provider's main needs,
// os.Exit(framework.Run(cmd)).
func Run(cmd *cobra.Command) int { return cli.Run(cmd) }

func run(cmd *cobra.Command, sp *spec, opts CommandOptions, versions string) error {
	switch sp.version {
	case "false":
	case "true", "raw":
		fmt.Fprintln(cmd.OutOrStdout(), versions)
		return nil
	default:
		return fmt.Errorf("--version=%q: want true, false or raw", sp.version)
	}
	if err := logsapi.ValidateAndApply(sp.logOptions, utilfeature.DefaultFeatureGate); err != nil {
		return err
	}
	cliflag.PrintFlags(cmd.Flags())
	logger := klog.Background()
	logger.Info("Starting", "command", cmd.Name(), "versions", versions)
	if msg := unstampedWarning(version.Get().GitVersion); msg != "" {
		klog.Warning(msg)
	}

	cfg, err := sp.complete(cmd.Flags(), true)
	if err != nil {
		return err
	}
	ctx := klog.NewContext(context.Background(), logger)
	p := opts.Provider
	if p == nil {
		p, err = opts.NewProvider(ctx, cfg)
		if err != nil {
			return fmt.Errorf("building the %q provider: %w", sp.providerName, err)
		}
		if p == nil {
			return fmt.Errorf("building the %q provider: NewProvider returned no provider and no error", sp.providerName)
		}
	}
	if p.name != sp.providerName {
		return fmt.Errorf("NewProvider built provider %q, but the command is for %q", p.name, sp.providerName)
	}
	cfg.provider = p
	if err := sp.check(cfg); err != nil {
		return err
	}
	if err := applyLeaderMigration(cfg, sp.s.Generic.LeaderMigration.ControllerMigrationConfig); err != nil {
		return err
	}
	registerMetrics(p, opts.Version)

	initializers := make(map[string]app.InitFunc, len(cfg.controllers))
	for _, c := range cfg.controllers {
		initializers[c.Name] = initFunc(c, cfg)
	}
	stop := opts.Stop
	if stop == nil {
		stop = make(chan struct{})
	}
	defer logs.FlushLogs()
	return app.Run(cfg.Upstream, p, initializers, map[string]app.WebhookHandler{}, stop)
}

// initFunc adapts a table entry to the manager: it honours
// DisabledByDefault, builds the controller's client, sets it up and runs it
// tracked.
func initFunc(c Controller, cfg *Config) app.InitFunc {
	return func(ctx context.Context, cmctx genericcontrollermanager.ControllerContext) (controller.Interface, bool, error) {
		logger := klog.FromContext(ctx).WithValues("controller", c.Name)
		if !cfg.Enabled(c.Name) {
			logger.Info("Controller disabled by default; enable it with --controllers=*," + c.Name)
			return nil, false, nil
		}
		client, err := cfg.Upstream.ClientBuilder.Client(c.clientName())
		if err != nil {
			return nil, false, fmt.Errorf("controller %q: client %q: %w", c.Name, c.clientName(), err)
		}
		r, err := c.New(klog.NewContext(ctx, logger), ControllerContext{
			Client:    client,
			Informers: cfg.Upstream.SharedInformers,
			Config:    cfg,
			Cloud:     cfg.provider,
			Provider:  cfg.provider,
			Metrics:   cmctx.ControllerManagerMetrics,
		})
		if errors.Is(err, ErrNotStarted) {
			logger.Info("Not starting controller", "reason", err.Error())
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("controller %q: %w", c.Name, err)
		}
		t := Start(klog.NewContext(ctx, logger), c, r, cmctx.ControllerManagerMetrics)
		return t, true, nil
	}
}

var buildInfo = metrics.NewGaugeVec(&metrics.GaugeOpts{
	Namespace:      "ccmkit",
	Name:           "build_info",
	Help:           "A metric with a constant '1' value labeled by the provider, its version, and the ccmkit and Kubernetes library versions it was built with.",
	StabilityLevel: metrics.ALPHA,
}, []string{"provider", "provider_version", "ccmkit_version", "kubernetes_version"})

// registerMetrics registers the provider's metrics and ccmkit's build info
// in the legacy registry that upstream's /metrics serves: the binary's one
// global registry.
func registerMetrics(p *Provider, providerVersion string) {
	for _, c := range p.collectors {
		// AlreadyRegistered only happens when a process runs two commands
		// for one provider; the metrics are served either way.
		_ = legacyregistry.Register(c)
	}
	_ = legacyregistry.Register(buildInfo)
	v := modVersions(providerVersion)
	buildInfo.WithLabelValues(p.name, v.provider, v.ccmkit, v.kubernetes).Set(1)
}

type versions struct{ provider, ccmkit, kubernetes, cloudProvider string }

// modVersions reads the versions from the build information; a non-empty
// providerVersion overrides the main module's.
func modVersions(providerVersion string) versions {
	v := versions{provider: "unknown", ccmkit: "unknown", kubernetes: "unknown", cloudProvider: cloudProviderVersion}
	if providerVersion != "" {
		v.provider = providerVersion
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if providerVersion == "" {
		v.provider = bi.Main.Version
	}
	if bi.Main.Path == ccmkitModule {
		v.ccmkit = bi.Main.Version
	}
	for _, d := range bi.Deps {
		switch d.Path {
		case ccmkitModule:
			v.ccmkit = d.Version
		case "k8s.io/cloud-provider":
			v.cloudProvider = d.Version
		}
	}
	if providerVersion != "" {
		v.provider = providerVersion
	}
	// k8s.io staging modules v0.X.Y ship with Kubernetes v1.X.Y.
	if rest, ok := strings.CutPrefix(v.cloudProvider, "v0."); ok {
		v.kubernetes = "v1." + rest
	}
	return v
}

// cloudProviderVersion is the k8s.io/cloud-provider version ccmkit's go.mod
// requires (a test keeps it in step), reported when the binary carries no
// build information (test binaries).
const cloudProviderVersion = "v0.37.2"

const ccmkitModule = "github.com/ccmkit/ccmkit"

// unstampedWarning returns what to tell the operator when the binary has
// no Kubernetes version stamp (gitVersion is component-base's default), or
// "" when it has one. The stamp is a link-time variable only, so the
// provider's build sets it.
func unstampedWarning(gitVersion string) string {
	if !strings.HasPrefix(gitVersion, "v0.0.0-master") {
		return ""
	}
	return fmt.Sprintf("This binary has no Kubernetes version stamp: upstream's Version log line, the kubernetes_build_info metric and the API clients' User-Agent say %q. "+
		"Build it with -ldflags '-X k8s.io/component-base/version.gitVersion=vX.Y.Z -X k8s.io/client-go/pkg/version.gitVersion=vX.Y.Z' (and gitMajor, gitMinor), as kube-controller-manager is built", gitVersion)
}

// versionInfo is what --version prints and the start log shows.
func versionInfo(providerVersion string) string {
	v := modVersions(providerVersion)
	return fmt.Sprintf("version %s (ccmkit %s; Kubernetes %s, k8s.io/cloud-provider %s)", v.provider, v.ccmkit, v.kubernetes, v.cloudProvider)
}
