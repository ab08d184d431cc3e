package deploy_test

import (
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ccmkit/ccmkit/examples/localcloud/deploy"
)

func TestNoWildcards(t *testing.T) {
	objs, err := deploy.RBAC()
	if err != nil {
		t.Fatal(err)
	}
	roles := 0
	for _, o := range objs {
		var rules []rbacv1.PolicyRule
		switch o.GetKind() {
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
				t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
			}
			rules = r.Rules
			if r.AggregationRule != nil {
				t.Errorf("ClusterRole %s aggregates other roles", r.Name)
			}
		case "Role":
			var r rbacv1.Role
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
				t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
			}
			rules = r.Rules
		default:
			continue
		}
		roles++
		if len(rules) == 0 {
			t.Errorf("%s %s has no rules", o.GetKind(), o.GetName())
		}
		for i, r := range rules {
			for field, vals := range map[string][]string{"verbs": r.Verbs, "resources": r.Resources, "apiGroups": r.APIGroups} {
				if slices.ContainsFunc(vals, func(v string) bool { return v == "*" || v == rbacv1.ResourceAll }) {
					t.Errorf("%s %s rule %d: wildcard in %s %q", o.GetKind(), o.GetName(), i, field, vals)
				}
				if len(vals) == 0 {
					t.Errorf("%s %s rule %d: no %s", o.GetKind(), o.GetName(), i, field)
				}
			}
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("%s %s rule %d: non-resource URLs %q", o.GetKind(), o.GetName(), i, r.NonResourceURLs)
			}
		}
	}
	if roles < 6 {
		t.Errorf("found %d roles, want the binary's two and one per controller identity", roles)
	}
}

// TestBindings checks that every controller identity and the binary's own
// ServiceAccount are bound, and that the Deployment runs two replicas with
// the flags the issue requires.
func TestBindings(t *testing.T) {
	objs, err := deploy.RBAC()
	if err != nil {
		t.Fatal(err)
	}
	bound := map[string]bool{}
	for _, o := range objs {
		if k := o.GetKind(); k != "ClusterRoleBinding" && k != "RoleBinding" {
			continue
		}
		var b rbacv1.RoleBinding // same shape for both
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
			t.Fatal(err)
		}
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Namespace == "kube-system" {
				bound[s.Name] = true
			}
		}
	}
	for _, sa := range []string{"cloud-controller-manager", "node-controller", "service-controller", "route-controller", "load-balancer-reaper"} {
		if !bound[sa] {
			t.Errorf("ServiceAccount kube-system/%s is not bound", sa)
		}
	}
	dep, err := deploy.Deployment()
	if err != nil {
		t.Fatal(err)
	}
	if r := dep.Spec.Replicas; r == nil || *r < 2 {
		t.Errorf("replicas = %v, want at least 2 (HA)", r)
	}
	cmd, err := deploy.CCMCommand()
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--cluster-name=local", "--cluster-cidr=10.244.0.0/16", "--allocate-node-cidrs", "--use-service-account-credentials", "--leader-elect"} {
		if !slices.Contains(cmd, flag) {
			t.Errorf("the Deployment's command lacks %s", flag)
		}
	}
}

func TestDeploymentIsStrict(t *testing.T) {
	cmd, err := deploy.CCMCommand()
	if err != nil {
		t.Fatal(err)
	}
	if cmd[0] != "/localcloud-ccm" {
		t.Errorf("the command runs %q, want the image's /localcloud-ccm", cmd[0])
	}
	for _, arg := range cmd[1:] {
		if !strings.HasPrefix(arg, "--") {
			t.Errorf("argument %q is not a --flag", arg)
		}
	}
}
