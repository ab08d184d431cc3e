// Package ctrlplane starts a real Kubernetes control plane, one etcd member
// and kube-apiserver on loopback, for end-to-end tests and demos.
//
// The binaries are not built by go test: `make controlplane` builds them from
// the Go module proxy in the nested module tools/ctrlplane (k8s.io/kubernetes
// v1.37.2 and etcd v3.7.0, versions pinned in its go.mod) into the
// repository's bin/ directory, where [Start] looks for them by default
// ([DefaultBinDir]; $CCMKIT_CTRLPLANE_BIN overrides it, and so does
// [Options.BinDir]). The first build is cold and takes minutes; later ones
// take seconds. A missing binary is an error wrapping [ErrNotBuilt]: tests
// that need the control plane fail, they do not skip.
//
// In a test, [StartForTest] starts the control plane in t.TempDir(), stops it
// in t.Cleanup and prints both processes' logs if the test failed:
//
//	cp := ctrlplane.StartForTest(t, ctrlplane.Options{})
//	admin := kubernetes.NewForConfigOrDie(cp.RESTConfig())
//
// Outside tests (a demo command), [Start] takes a context that bounds the
// start-up only; the processes run until [ControlPlane.Stop].
//
// # What runs
//
// etcd: one member on two free loopback ports with --unsafe-no-fsync and its
// data in the control plane's directory. kube-apiserver: on a free loopback
// port with --advertise-address=127.0.0.1 --endpoint-reconciler-type=none,
// --authorization-mode=Node,RBAC, a serving certificate and client CA
// generated in Go (crypto/ecdsa), service-account signing keys generated the
// same way, a request-header (front-proxy) CA so that the
// kube-system/extension-apiserver-authentication ConfigMap is published (a
// cloud-controller-manager's delegated authentication reads it), and a static
// token file holding one admin token in system:masters. Start returns once
// /readyz answers 200 and the default and kube-system namespaces exist.
//
// Nothing else runs: no kube-controller-manager (so no default
// ServiceAccounts, no garbage collection, and a deleted namespace stays
// Terminating), no scheduler, no kubelet. Tests act as the kubelet
// themselves, for instance by updating Node status through the status
// subresource with a [User] named system:node:<name> in group system:nodes.
//
// # Identities
//
// [ControlPlane.RESTConfig] and [ControlPlane.Kubeconfig] are the admin (in
// system:masters: RBAC does not apply). [ControlPlane.RESTConfigFor] and
// [ControlPlane.WriteKubeconfig] make any other identity at any time, with a
// client certificate signed by the cluster CA (CN = user, O = groups), so
// that RBAC applies to it: a cloud-controller-manager under test runs with
// its own ClusterRoles this way. A ServiceAccount identity is the user
// system:serviceaccount:<namespace>:<name> in the groups system:serviceaccounts
// and system:serviceaccounts:<namespace>: RBAC bindings to the ServiceAccount
// subject apply to it, with no token to request.
//
// # Files
//
// The directory ([ControlPlane.Dir]) holds etcd.log, kube-apiserver.log,
// kubeconfig (admin), the generated keys and certificates, and etcd's data.
// Ports are chosen by listening on 127.0.0.1:0 and closing; a process that
// fails to bind one (another process took it meanwhile) is restarted on new
// ports.
package ctrlplane
