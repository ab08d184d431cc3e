// Package framework composes ccmkit's blocks into a cloud provider and a
// cloud-controller-manager binary.
//
// A provider author writes backends, hands them to a [Builder], and gets a
// [*Provider] that implements cloudprovider.Interface:
//
//	p, err := framework.NewBuilder("example").
//		WithInstances(backend, instances.CacheOptions{}).
//		WithBudget(cloudcall.BudgetOptions{ReadQPS: 50}).
//		Build()
//
// The Builder's chain methods never fail; Build reports every misuse at once.
// [NewCommand] wraps k8s.io/cloud-provider/app's command around the Provider:
// the upstream flags, leader election, leader migration, health and metrics
// endpoints are all upstream's; ccmkit adds a cloud initializer closure (no
// global provider registry), a preset --cloud-provider, its own controllers
// (the node IPAM controller, "node-ipam-controller", and any added with
// Builder.WithController), and clear errors for flag combinations upstream
// would exit on.
//
// Dropping down a level: the Provider is an ordinary cloudprovider.Interface,
// usable with app.NewCloudControllerManagerCommand directly or with the
// upstream controllers in tests (see testing/harness); each block is usable
// without the framework.
package framework
