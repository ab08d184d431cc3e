// Package e2e holds the example provider's end-to-end tests: the real
// localcloud-ccm binary, as its own ServiceAccount identity bound by the
// deploy manifests' roles, against a real kube-apiserver and etcd (package
// ctrlplane) and the local cloud binary, with Nodes played by package
// stack. They need `make controlplane` and fail (they do not skip) when
// its binaries are missing; they build the two example binaries
// themselves.
//
// What they check: Nodes initialized (providerID, addresses, labels, the
// uninitialized taint gone) and given pod CIDRs; routes created and
// NetworkUnavailable False; a LoadBalancer Service's ingress IP with ipMode
// Proxy, no status patch on a re-sync, a TCP connection through the load
// balancer reaching a Node's server; deletion removing the load balancer
// and freeing its address; a SIGKILL of the CCM while the cloud holds a
// load balancer pending, then a restart: no second load balancer, no
// address handed out twice; two replicas and a SIGKILL of the leader: the
// other takes over within 9 s; --enable-leader-migration with ccmkit's
// generated configuration taking the migration lease and running the
// migrated controllers under it; no "forbidden" line in any CCM log. The
// tests log the measured figures (Service creation to the first byte
// through the load balancer; Node creation to initialized) on lines that
// start with "figure:".
package e2e
