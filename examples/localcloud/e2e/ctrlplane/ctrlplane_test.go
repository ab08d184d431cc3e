package ctrlplane_test

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ccmkit/ccmkit/examples/localcloud/e2e/ctrlplane"
)

// TestControlPlane starts etcd and kube-apiserver, creates a Node and a
// LoadBalancer Service, acts as the Node's kubelet, checks that RBAC applies
// to a non-admin identity until a ClusterRole and binding grant it, and
// stops. It fails when the binaries are missing: run `make controlplane`.
func TestControlPlane(t *testing.T) {
	start := time.Now()
	cp := ctrlplane.StartForTest(t, ctrlplane.Options{})
	t.Logf("start-up: %v", time.Since(start).Round(time.Millisecond))
	ctx := t.Context()
	admin := newClient(t, cp.RESTConfig())

	// The admin kubeconfig file works on its own.
	fromFile, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	version, err := newClient(t, fromFile).Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server version %s", version.GitVersion)

	node, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.UID == "" || node.ResourceVersion == "" {
		t.Errorf("created Node has UID %q, resourceVersion %q: want both set by the API server", node.UID, node.ResourceVersion)
	}

	// A kubelet's identity (Node authorizer) sets Ready through the status
	// subresource.
	kubelet := newClientFor(t, cp, ctrlplane.User{Name: "system:node:node-a", Groups: []string{"system:nodes"}})
	node.Status.Conditions = []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
	}}
	if _, err := kubelet.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("kubelet identity: update Node status: %v", err)
	}

	svc, err := admin.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Allocated by the API server: a cluster IP in the default range and a
	// node port in the default range.
	if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err != nil || !netip.MustParsePrefix("10.96.0.0/16").Contains(ip) {
		t.Errorf("Service clusterIP = %q: want an address in 10.96.0.0/16", svc.Spec.ClusterIP)
	}
	if np := svc.Spec.Ports[0].NodePort; np < 30000 || np > 32767 {
		t.Errorf("Service nodePort = %d: want one in 30000-32767", np)
	}

	// A CCM-like identity, through a kubeconfig file as a binary would
	// use it, is forbidden until RBAC grants it.
	const user = "ccmkit-test-ccm"
	path := filepath.Join(t.TempDir(), "kubeconfig-ccm")
	if err := cp.WriteKubeconfig(path, ctrlplane.User{Name: user}); err != nil {
		t.Fatal(err)
	}
	ccmConfig, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	ccm := newClient(t, ccmConfig)
	if _, err := ccm.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("%s lists Nodes before any binding: err = %v, want Forbidden", user, err)
	}

	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "ccmkit-test-node-reader"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "ccmkit-test-node-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "ccmkit-test-node-reader"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The RBAC authorizer reads bindings from an informer: poll until the
	// binding is seen.
	var nodes *corev1.NodeList
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		nodes, err = ccm.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if apierrors.IsForbidden(err) {
			return false, nil
		}
		return err == nil, err
	}); err != nil {
		t.Fatalf("%s lists Nodes after the binding: %v", user, err)
	}
	if len(nodes.Items) != 1 || nodes.Items[0].Name != "node-a" {
		t.Errorf("%s lists %d Nodes: want node-a only", user, len(nodes.Items))
	}
	// The role grants Nodes and nothing else.
	if _, err := ccm.CoreV1().Services("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("%s lists Services with a Node-only role: err = %v, want Forbidden", user, err)
	}

	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{}); err == nil {
		t.Error("the API server answers after Stop")
	}
}

func TestStartWithoutBinaries(t *testing.T) {
	_, err := ctrlplane.Start(t.Context(), ctrlplane.Options{BinDir: t.TempDir()})
	if !errors.Is(err, ctrlplane.ErrNotBuilt) {
		t.Fatalf("Start with an empty bin directory: err = %v, want ErrNotBuilt", err)
	}
}

func TestDefaultBinDir(t *testing.T) {
	t.Run("repository", func(t *testing.T) {
		t.Setenv(ctrlplane.BinDirEnv, "")
		dir, err := ctrlplane.DefaultBinDir()
		if err != nil {
			t.Fatal(err)
		}
		// This package is examples/localcloud/e2e/ctrlplane in the repository.
		want, err := filepath.Abs("../../../../bin")
		if err != nil {
			t.Fatal(err)
		}
		if dir != want {
			t.Errorf("DefaultBinDir() = %q, want %q", dir, want)
		}
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv(ctrlplane.BinDirEnv, "/opt/ctrlplane/bin")
		if dir, err := ctrlplane.DefaultBinDir(); err != nil || dir != "/opt/ctrlplane/bin" {
			t.Errorf("DefaultBinDir() = %q, %v; want /opt/ctrlplane/bin, nil", dir, err)
		}
	})
}

func newClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newClientFor(t *testing.T, cp *ctrlplane.ControlPlane, u ctrlplane.User) kubernetes.Interface {
	t.Helper()
	cfg, err := cp.RESTConfigFor(u)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, cfg)
}
