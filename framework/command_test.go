package framework_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	cliflag "k8s.io/component-base/cli/flag"
	migrationconfig "k8s.io/controller-manager/pkg/leadermigration/config"

	"github.com/ccmkit/ccmkit/framework"
)

func noopController(name string, aliases ...string) framework.Controller {
	return framework.Controller{Name: name, Aliases: aliases, New: func(context.Context, framework.ControllerContext) (framework.Runnable, error) {
		return framework.RunFunc(func(ctx context.Context) error { <-ctx.Done(); return nil }), nil
	}}
}

// kubeconfig writes a kubeconfig for an API server nobody listens on: the
// command builds its clients from it without connecting, so everything up
// to leader election runs.
func kubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600))
	return path
}

// offline are the flags that let the command run up to leader election
// without an API server or a serving port.
func offline(t *testing.T, more ...string) []string {
	return append([]string{"--kubeconfig=" + kubeconfig(t), "--secure-port=0"}, more...)
}

// errBuilt stops the command right after the provider constructor, so a
// test can look at the configuration it received.
var errBuilt = errors.New("built")

func execute(t *testing.T, opts framework.CommandOptions, args ...string) (string, error) {
	t.Helper()
	cmd, err := framework.NewCommand(opts)
	require.NoError(t, err)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), err
}

func TestNewProviderGetsTheCompletedConfig(t *testing.T) {
	cloudConfig := filepath.Join(t.TempDir(), "cloud.conf")
	require.NoError(t, os.WriteFile(cloudConfig, []byte("endpoint: https://api.example\ntoken: secret\n"), 0o600))
	var region string
	var fss cliflag.NamedFlagSets
	fss.FlagSet("mycloud").StringVar(&region, "mycloud-region", "eu-1", "The region.")

	var got *framework.Config
	_, err := execute(t, framework.CommandOptions{
		ProviderName: "mycloud",
		Flags:        fss,
		NewProvider: func(_ context.Context, cfg *framework.Config) (*framework.Provider, error) {
			got = cfg
			return nil, errBuilt
		},
	}, offline(t, "--cluster-name=prod", "--cluster-cidr=10.244.0.0/16,fd00:10:244::/56",
		"--cloud-config="+cloudConfig, "--mycloud-region=us-2")...)
	require.ErrorIs(t, err, errBuilt)
	assert.ErrorContains(t, err, `building the "mycloud" provider`)
	require.NotNil(t, got)
	assert.Equal(t, "mycloud", got.ProviderName)
	assert.Equal(t, "prod", got.ClusterName)
	if diff := cmp.Diff([]netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")}, got.ClusterCIDRs, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("ClusterCIDRs (-want +got):\n%s", diff)
	}
	assert.Equal(t, "endpoint: https://api.example\ntoken: secret\n", string(got.CloudConfig))
	assert.Equal(t, "us-2", region, "the provider's own flag is parsed before NewProvider")
	assert.Equal(t, "us-2", got.Flags.Lookup("mycloud-region").Value.String())
	require.NotNil(t, got.Upstream, "upstream's completed config is there for anything else")
	assert.Equal(t, "prod", got.Upstream.ComponentConfig.KubeCloudShared.ClusterName)
}

func TestCommandBadInputFailsBeforeLeaderElection(t *testing.T) {
	p := bareProvider(t, "fake")
	badMigration := filepath.Join(t.TempDir(), "migration.yaml")
	require.NoError(t, os.WriteFile(badMigration, []byte(`apiVersion: controllermanager.config.k8s.io/v1
kind: LeaderMigrationConfiguration
leaderName: cloud-provider-extraction-migration
controllerLeaders:
- {name: route-controller, component: "*"}
- {name: service-lb-controller, component: "*"}
`), 0o600))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unreadable cloud config", offline(t, "--cloud-config=/nonexistent/cloud.conf"), "--cloud-config"},
		{"malformed cluster CIDR", offline(t, "--cluster-cidr=10.0.0.0/33"), "--cluster-cidr"},
		{"three cluster CIDRs", offline(t, "--cluster-cidr=10.0.0.0/16,10.1.0.0/16,fd00::/48"), "--cluster-cidr"},
		{"other cloud provider", offline(t, "--cloud-provider=other"), `this binary is the "fake" provider`},
		{"unknown controller", offline(t, "--controllers=*,nosuch"), "nosuch"},
		{"IPAM without cluster CIDR", offline(t, "--allocate-node-cidrs"), "--cluster-cidr"},
		{"unknown allocator", offline(t, "--allocate-node-cidrs", "--cluster-cidr=10.0.0.0/16", "--cidr-allocator-type=Bogus"), "Bogus"},
		{"migration config with a wrong name", offline(t, "--enable-leader-migration", "--leader-migration-config="+badMigration), `"route-controller"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Reaching leader election would block on the API server nobody
			// serves: returning at all shows the check ran before it.
			_, err := execute(t, framework.CommandOptions{Provider: p}, tc.args...)
			require.Error(t, err)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestCommandConstructorErrors(t *testing.T) {
	_, err := framework.NewCommand(framework.CommandOptions{ProviderName: "x"})
	assert.ErrorContains(t, err, "NewProvider")
	_, err = framework.NewCommand(framework.CommandOptions{ProviderName: "Bad Name", NewProvider: func(context.Context, *framework.Config) (*framework.Provider, error) { return nil, nil }})
	assert.ErrorContains(t, err, "Bad Name")

	// A constructor that returns neither a provider nor an error.
	_, err = execute(t, framework.CommandOptions{ProviderName: "fake", NewProvider: func(context.Context, *framework.Config) (*framework.Provider, error) { return nil, nil }}, offline(t)...)
	assert.ErrorContains(t, err, "no provider and no error")
	// One that builds another provider.
	other := bareProvider(t, "other")
	_, err = execute(t, framework.CommandOptions{ProviderName: "fake", NewProvider: func(context.Context, *framework.Config) (*framework.Provider, error) { return other, nil }}, offline(t)...)
	assert.ErrorContains(t, err, `built provider "other"`)
}

func TestCommandHelpAndVersionNeedNoOtherFlag(t *testing.T) {
	extra := noopController("fake-extra-controller", "fakeextra")
	extra.Flags = func(fs *pflag.FlagSet) { fs.Int("fake-extra-workers", 2, "Workers of the extra controller.") }
	opts := framework.CommandOptions{
		ProviderName: "fake",
		Version:      "v1.2.3",
		Controllers:  []framework.Controller{extra},
		NewProvider:  func(context.Context, *framework.Config) (*framework.Provider, error) { return nil, errBuilt },
	}
	cmd, err := framework.NewCommand(opts)
	require.NoError(t, err)
	assert.Equal(t, "fake-cloud-controller-manager", cmd.Name())
	assert.Equal(t, "fake", cmd.Flags().Lookup("cloud-provider").DefValue, "--cloud-provider is preset")

	help, err := execute(t, opts, "--help")
	require.NoError(t, err)
	for _, flag := range []string{"--cloud-provider", "--leader-elect", "--leader-migration-config", "--cluster-cidr",
		"--configure-cloud-routes", "--controllers", "--secure-port", "--kubeconfig", "--node-monitor-period", "-v, --v",
		"--node-cidr-mask-size-ipv4", "--fake-extra-workers"} {
		assert.Contains(t, help, flag, "--help lacks %s", flag)
	}
	assert.Contains(t, help, "fake-cloud-controller-manager is the cloud-controller-manager")
	assert.NotContains(t, help, "Usage:\n  cloud-controller-manager")
	assert.Contains(t, help, "Fake-extra-controller flags:", "the controller's flags have a section named after it")
	assert.Contains(t, help, "Node-ipam-controller flags:")
	assert.Contains(t, help, "with CloudAllocator the CIDRs come from the cloud", "--allocate-node-cidrs's help is right for both allocators")
	assert.Contains(t, help, "fake-extra-controller", "--controllers lists the extra controller")

	version, err := execute(t, opts, "--version")
	require.NoError(t, err)
	assert.Contains(t, version, "version v1.2.3")
	assert.Contains(t, version, "ccmkit ")
	assert.Contains(t, version, "Kubernetes v1.37.2")
	assert.NotContains(t, version, "$Format")
}

func TestCommandRejectsCollisions(t *testing.T) {
	withFlag := func(c framework.Controller, flag string) framework.Controller {
		c.Flags = func(fs *pflag.FlagSet) { fs.String(flag, "", "") }
		return c
	}
	var providerFlags cliflag.NamedFlagSets
	providerFlags.FlagSet("mine").String("cluster-cidr", "", "")
	for name, opts := range map[string]framework.CommandOptions{
		"upstream name":         {Controllers: []framework.Controller{noopController("cloud-node-controller")}},
		"upstream alias":        {Controllers: []framework.Controller{noopController("route")}},
		"alias taken":           {Controllers: []framework.Controller{noopController("mine", "service")}},
		"node IPAM's alias":     {Controllers: []framework.Controller{noopController("mine", "nodeipam")}},
		"two with one name":     {Controllers: []framework.Controller{noopController("mine"), noopController("mine")}},
		"replaces nothing":      {Controllers: []framework.Controller{{Name: "mine", Replaces: true, New: noopController("").New}}},
		"no New":                {Controllers: []framework.Controller{{Name: "mine"}}},
		"flag of upstream":      {Controllers: []framework.Controller{withFlag(noopController("mine"), "cluster-cidr")}},
		"flag of node IPAM":     {Controllers: []framework.Controller{withFlag(noopController("mine"), "node-cidr-mask-size")}},
		"provider flag clashes": {Flags: providerFlags},
	} {
		opts.ProviderName = "fake"
		opts.NewProvider = func(context.Context, *framework.Config) (*framework.Provider, error) { return nil, errBuilt }
		_, err := framework.NewCommand(opts)
		assert.Error(t, err, name)
	}
}

func TestControllerReplacesUpstreamUnderItsName(t *testing.T) {
	mine := noopController("node-route-controller")
	mine.Replaces = true
	table, err := framework.Controllers(mine)
	require.NoError(t, err)
	var names []string
	for _, c := range table {
		names = append(names, c.Name)
		if c.Name == "node-route-controller" {
			assert.Equal(t, "route-controller", c.ClientName, "keeps upstream's client name")
			assert.True(t, c.Replaces, "it is the replacement")
		}
	}
	assert.Equal(t, []string{"cloud-node-controller", "cloud-node-lifecycle-controller", "service-lb-controller", "node-route-controller", "node-ipam-controller", "load-balancer-reaper"}, names)

	// The alias "route" still names it: --controllers=*,-route turns it off.
	cfg, err := framework.ParseConfig(framework.CommandOptions{ProviderName: "fake", Controllers: []framework.Controller{mine}}, []string{"--controllers=*,-route"})
	require.NoError(t, err)
	assert.False(t, cfg.Enabled("node-route-controller"))
}

func TestControllersDisabledByDefault(t *testing.T) {
	opt := noopController("fake-optional-controller")
	opt.DisabledByDefault = true
	opts := framework.CommandOptions{ProviderName: "fake", Controllers: []framework.Controller{opt}}
	for args, want := range map[string]bool{
		"":                false,
		"--controllers=*": false,
		"--controllers=*,fake-optional-controller": true,
		"--controllers=fake-optional-controller":   true,
	} {
		var argv []string
		if args != "" {
			argv = []string{args}
		}
		cfg, err := framework.ParseConfig(opts, argv)
		require.NoError(t, err, args)
		assert.Equal(t, want, cfg.Enabled("fake-optional-controller"), args)
		assert.Equal(t, args == "" || args == "--controllers=*" || args == "--controllers=*,fake-optional-controller", cfg.Enabled("cloud-node-controller"), args)
	}
}

func TestLeaderMigrationConfigNamesControllersCanonically(t *testing.T) {
	p := routesProvider(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--enable-leader-migration", "--cluster-cidr=10.0.0.0/16"},
			[]string{"cloud-node-lifecycle-controller", "node-route-controller"}},
		{[]string{"--enable-leader-migration", "--cluster-cidr=10.0.0.0/16", "--allocate-node-cidrs"},
			[]string{"cloud-node-lifecycle-controller", "node-route-controller", "node-ipam-controller"}},
		{[]string{"--enable-leader-migration", "--configure-cloud-routes=false"},
			[]string{"cloud-node-lifecycle-controller"}},
	} {
		cfg, err := framework.ParseConfig(framework.CommandOptions{Provider: p}, tc.args)
		require.NoError(t, err)
		mc := framework.LeaderMigrationConfig(cfg)
		var got []string
		for _, l := range mc.ControllerLeaders {
			got = append(got, l.Name)
			assert.Equal(t, "*", l.Component)
			assert.True(t, cfg.Runs(l.Name), "%s is a controller the command starts", l.Name)
		}
		assert.Equal(t, tc.want, got, tc.args)
		assert.Equal(t, "cloud-provider-extraction-migration", mc.LeaderName)

		// The rendered YAML reads back as the same configuration.
		b, err := framework.RenderLeaderMigrationConfig(mc)
		require.NoError(t, err)
		path := filepath.Join(t.TempDir(), "m.yaml")
		require.NoError(t, os.WriteFile(path, b, 0o600))
		back, err := migrationconfig.ReadLeaderMigrationConfiguration(path)
		require.NoError(t, err)
		if diff := cmp.Diff(mc.ControllerLeaders, back.ControllerLeaders); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
		assert.Empty(t, migrationconfig.ValidateLeaderMigrationConfiguration(back))
	}
	// Without a load-balancer block the service controller does not run,
	// so service-lb-controller is not listed; lb tests cover it.
}

func TestRunPrintsVersion(t *testing.T) {
	cmd, err := framework.NewCommand(framework.CommandOptions{Provider: bareProvider(t, "fake"), Version: "v9"})
	require.NoError(t, err)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	assert.Equal(t, 0, framework.Run(cmd))
	assert.True(t, strings.HasPrefix(out.String(), "version v9 "), out.String())
}

func TestCloudProviderVersionMatchesGoMod(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	require.NoError(t, err)
	assert.Contains(t, string(b), "\tk8s.io/cloud-provider "+framework.CloudProviderVersion+"\n",
		"framework's cloudProviderVersion is the version go.mod requires")
}
