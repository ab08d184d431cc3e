package framework_test

import (
	"fmt"
	"os"

	"github.com/ccmkit/ccmkit/cloudcall"
	"github.com/ccmkit/ccmkit/framework"
	"github.com/ccmkit/ccmkit/instances"
	"github.com/ccmkit/ccmkit/testing/fakecloud"
)

// The whole main.go of a provider: build the Provider, wrap it in the
// upstream command, run it. (Compile-only: running it needs a cluster.)
func Example_main() {
	backend := fakecloud.New(fakecloud.Options{}).Instances() // your cloud's instances.Source
	p, err := framework.NewBuilder("example").
		WithInstances(backend, instances.CacheOptions{}).
		WithBudget(cloudcall.BudgetOptions{ReadQPS: 50, ReadBurst: 100}).
		Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cmd, err := framework.NewCommand(p, framework.CommandOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
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
