// Package lb is ccmkit's load-balancer block: it turns a small Backend that
// a provider author writes over the cloud's load-balancer API into a
// retrying, rate-limited, crash-safe cloudprovider.LoadBalancer.
//
// The package is being built; see the types Spec, Key, LoadBalancer and the
// Backend interface.
package lb
