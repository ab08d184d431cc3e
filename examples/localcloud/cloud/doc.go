// Package cloud is the local cloud of ccmkit's example provider: a small
// cloud API on loopback with instances, load balancers that really serve
// traffic, and a route table, whose state is a JSON file so that the cloud
// and the cloud-controller-manager restart independently.
//
// It plays the part a real cloud plays for a provider author: [Cloud] is
// the cloud (its HTTP API is [Cloud.Handler]; the localcloud command serves
// it), and [Client] is its Go SDK, which the example provider's backends
// call. Nothing in it knows about Kubernetes or ccmkit.
//
// # The API
//
// JSON over HTTP, authenticated by a bearer token ([Options.Token]):
//
//	GET    /v1/info                         the address range, provisioning delay, route limit
//	GET    /v1/instances[?name=N]           instances (by node name)
//	GET    /v1/instances/{id}
//	PUT    /v1/instances/{id}               register an instance (tests, the demo)
//	DELETE /v1/instances/{id}
//	GET    /v1/loadbalancers[?tag=k=v...]   load balancers carrying every tag
//	POST   /v1/loadbalancers                create; 409 NameInUse with the existing one
//	GET    /v1/loadbalancers/{id}
//	PUT    /v1/loadbalancers/{id}           replace the configuration
//	PUT    /v1/loadbalancers/{id}/targets   replace the targets
//	DELETE /v1/loadbalancers/{id}
//	GET    /v1/routes[?cluster=C]           the route table (a cluster's routes)
//	PUT    /v1/routes/{name}                create (an identical route: no-op); 409 RouteTableFull
//	DELETE /v1/routes/{name}
//	GET    /v1/holds                        provisioning holds
//	PUT    /v1/holds/{name}                 keep load balancer {name} ("*": all) provisioning
//	DELETE /v1/holds/{name}                 release it
//
// Errors are an [ErrorBody] with an HTTP status: 400 Invalid, 401, 404
// NotFound, 409 (NameInUse, AddressInUse, AddressesExhausted,
// RouteTableFull), 500.
//
// # Load balancers
//
// Names are unique: a second create of a name is refused with the existing
// load balancer, which makes creation idempotent for the client. A new load
// balancer gets an address at once (the requested one, which must be free
// and inside [Options.AddressRange], or the lowest free one) and is
// provisioning for [Options.ProvisionDelay], or until its hold is released;
// then it is active: it listens on its address at every listener port and
// proxies each TCP connection to a target's first address at the
// listener's node port, trying healthy targets first (round robin, or by
// client address with ClientIP affinity) and the others after them. Each
// target is checked every [Options.HealthInterval]: an HTTP GET of the
// health check's port and path (kube-proxy's /healthz on 10256 by default),
// or a TCP connection to the node port. Source ranges, when set, refuse
// other clients. Deletion takes [Options.DeleteDelay]; the address is free
// once the load balancer is gone. TCP only, IPv4 only.
//
// The default range, 127.0.100.0/24, is loopback on Linux: every address of
// 127.0.0.0/8 is local with nothing to configure. (On macOS only 127.0.0.1
// is, unless aliases are added.)
//
// # State
//
// The state ([State]) is written after every change to [Options.StatePath]
// atomically (a temporary file, synced, renamed over the old one) and read
// back by [New]: a restarted cloud serves and proxies what it held,
// provisioning and holds included. Times come from [Options.Clock], so
// tests can step provisioning with a fake clock; health checks and proxying
// use real time. [ParseState] checks a state file (fuzzed).
//
// It does not model: authentication beyond one token, rate limits (tests
// inject 429s in front of the handler), pagination, UDP, IPv6, or
// provisioning failures.
package cloud
