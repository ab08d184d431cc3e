package framework_test

import (
	"context"
	"fmt"
	"os"

	cliflag "k8s.io/component-base/cli/flag"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// The whole main.go of a provider: the command parses the flags, then
// builds the Provider from the completed configuration (here: the
// --cloud-config file, and a flag of the provider's own), then runs
// upstream's manager. (Compile-only: running it needs a cluster.)
func Example_main() {
	var region string
	var flags cliflag.NamedFlagSets
	flags.FlagSet("example").StringVar(&region, "example-region", "eu-1", "The cloud region.")

	cmd, err := framework.NewCommand(framework.CommandOptions{
		ProviderName: "example",
		Version:      "v1.0.0",
		Flags:        flags,
		NewProvider: func(ctx context.Context, cfg *framework.Config) (*framework.Provider, error) {
			if cfg.CloudConfig == nil {
				return nil, fmt.Errorf("--cloud-config is required")
			}
			// Parse cfg.CloudConfig, build the SDK client for region, check
			// the credentials; an error here ends the command before
			// leader election.
			backend := fakecloud.New(fakecloud.Options{}).Instances() // your cloud's instances.Source
			return framework.NewBuilder("example").
				WithInstances(backend, instances.CacheOptions{}).
				WithBudget(cloudcall.BudgetOptions{ReadQPS: 50, ReadBurst: 100}).
				Build()
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(framework.Run(cmd))
}

// Build reports every misuse at once.
func ExampleBuilder_Build() {
	_, err := framework.NewBuilder("Example").
		WithInstances(nil, instances.CacheOptions{}).
		Build()
	fmt.Println(err)
	// Output:
	// framework: invalid provider "Example": provider name "Example" must match ^[a-z][a-z0-9+.-]*$ (it is the providerID scheme)
	// WithInstances: nil Source
}
