// Package framework composes ccmkit's blocks into a cloud provider and a
// cloud-controller-manager binary.
//
// # The binary
//
// A provider's main.go hands [NewCommand] a constructor; the command parses
// the flags, then calls it with the completed [Config] (--cluster-name, the
// parsed --cluster-cidr, the --cloud-config file's content, the provider's
// own flags, upstream's completed configuration), then runs upstream's
// manager (k8s.io/cloud-provider/app.Run: leader election, leader migration,
// /healthz, /metrics, /configz):
//
//	cmd, err := framework.NewCommand(framework.CommandOptions{
//		ProviderName: "mycloud",
//		NewProvider: func(ctx context.Context, cfg *framework.Config) (*framework.Provider, error) {
//			api, err := newAPI(cfg.CloudConfig) // credentials checked here
//			if err != nil {
//				return nil, err
//			}
//			return framework.NewBuilder("mycloud").
//				WithInstances(&Backend{API: api}, instances.CacheOptions{}).
//				Build()
//		},
//	})
//	...
//	os.Exit(framework.Run(cmd))
//
// Everything the command can check is checked after the flags are parsed
// and before leader election, so a bad flag stops every replica at start:
// the constructor's error, an unreadable --cloud-config, a malformed
// --cluster-cidr, every controller's [Controller].Check (node IPAM's flags,
// --cluster-cidr for routes) and a --leader-migration-config naming a
// controller the binary does not run. [Run] prints each error once, without
// the usage (flag errors excepted), as k8s.io/component-base/cli.Run.
//
// /metrics serves upstream's manager metrics (rest_client_*,
// leader_election_master_status, kubernetes_build_info,
// running_managed_controllers, ccmkit's controllers included), the blocks'
// (ccmkit_cloud_calls_total, the instance cache's) and ccmkit_build_info.
// The command registers them in component-base's legacy registry, the one
// upstream serves; the blocks themselves take no global registry.
//
// # Controllers
//
// One controller table ([Controllers]) serves the command and
// testing/harness: upstream's four controllers, ccmkit's node IPAM
// controller ([NodeIPAMController]) and the provider's
// ([CommandOptions].Controllers). A [Controller] can be disabled by default
// (enabled with --controllers=*,<name>), declare flags shown in a --help
// section named after it, replace an upstream controller under its
// canonical name (keeping upstream's client name and aliases), report "not
// started" ([ErrNotStarted]) so the manager skips it, and run as a blocking
// [Runnable] that the manager tracks ([Start]: running_managed_controllers,
// a health check that fails once it stopped). Blocks stay free of framework:
// a block exports a type with a blocking Run(ctx) error method and
// framework wraps it.
//
// # Leader migration
//
// With --enable-leader-migration and no --leader-migration-config the
// command uses [LeaderMigrationConfig], which names the migratable
// controllers canonically (upstream's default names "route-controller" and
// "service-controller" match no controller, so those would silently stay
// under the main lock); [RenderLeaderMigrationConfig] writes it as YAML for
// operators. Upstream's manager never releases its lease on exit, so a
// rolling update leaves the controllers idle for about the lease duration
// (--leader-elect-lease-duration, 15 s by default).
//
// # Dropping down a level
//
// The Provider is an ordinary cloudprovider.Interface, usable with
// app.NewCloudControllerManagerCommand directly or with the upstream
// controllers in tests (testing/harness); each block is usable without the
// framework. [ParseConfig] parses flag strings into a Config without API
// clients, for tests.
package framework
