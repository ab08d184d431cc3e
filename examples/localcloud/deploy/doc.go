// Package deploy holds the example cloud-controller-manager's deploy
// manifests, embedded so that tests apply exactly the files an operator
// would:
//
//   - rbac.yaml: the binary's own identity, the ServiceAccount
//     kube-system/cloud-controller-manager: a ClusterRole for the shared
//     informers (get/list/watch Nodes and Services) and Events; a Role in
//     kube-system for the leader-election Leases and, for
//     --use-service-account-credentials, get/create ServiceAccounts and
//     create serviceaccounts/token; bindings to system:auth-delegator and
//     to the Role extension-apiserver-authentication-reader.
//   - controllers-rbac.yaml: one ClusterRole and binding per controller
//     identity: node-controller (cloud-node, cloud-node-lifecycle and
//     ccmkit's node IPAM), service-controller, route-controller and
//     load-balancer-reaper.
//   - deployment.yaml: two replicas with leader election, the flags
//     --cluster-name, --cluster-cidr, --allocate-node-cidrs and
//     --use-service-account-credentials, and the --cloud-config from a
//     Secret.
//
// No rule has a wildcard in its verbs, resources or apiGroups
// (deploy_test.go checks it). The end-to-end tests run the binary with
// exactly these roles and check that its log has no "forbidden" line; they
// run it with the Deployment's container command ([CCMCommand], with the
// machine's paths and ports in place), and create the Deployment and the
// Secret it mounts on the real kube-apiserver, which validates and admits
// them.
package deploy
