package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
	"github.com/ccmkit/ccmkit/examples/localcloud/e2e/ctrlplane"
	"github.com/ccmkit/ccmkit/examples/localcloud/e2e/stack"
	"github.com/ccmkit/ccmkit/examples/localcloud/provider"
	"github.com/ccmkit/ccmkit/lb"
)

const (
	clusterName = "e2e"
	namespace   = "default"
	// Each test Service has its own node port, served by every fake Node.
	firstNodePort = 30080
	nodePorts     = 8
	// mainLease and migrationLease are upstream's lease names.
	mainLease      = "cloud-controller-manager"
	migrationLease = "cloud-provider-extraction-migration"
)

// env is one end-to-end environment: control plane, local cloud, CCMs.
type env struct {
	t           *testing.T
	dir         string
	bins        stack.Binaries
	cp          *ctrlplane.ControlPlane
	admin       kubernetes.Interface
	cloud       *stack.Cloud
	cloudConfig string
	ccms        []*stack.CCM
	nodes       []*stack.FakeNode
	nextNode    int
}

// newEnv builds the binaries, starts the control plane and the local cloud,
// and applies the deploy manifests' RBAC. It fails t (never skips) when
// the control plane's binaries are missing.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir()}
	ctx := t.Context()
	bins, err := stack.Build(ctx, filepath.Join(e.dir, "bin"), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	e.bins = bins
	e.cp = ctrlplane.StartForTest(t, ctrlplane.Options{})
	e.admin = kubernetes.NewForConfigOrDie(e.cp.RESTConfig())
	if err := stack.ApplyRBAC(ctx, e.admin); err != nil {
		t.Fatal(err)
	}
	e.startCloud("")
	e.cloudConfig = filepath.Join(e.dir, "cloud.json")
	if err := e.cloud.WriteCloudConfig(e.cloudConfig); err != nil {
		t.Fatal(err)
	}
	if _, err := stack.ApplyDeployment(ctx, e.admin, e.cloudConfig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, c := range e.ccms {
			c.Stop()
		}
		if e.cloud != nil {
			e.cloud.Stop()
		}
		for _, n := range e.nodes {
			n.Close()
		}
		if t.Failed() {
			for _, c := range e.ccms {
				t.Logf("the end of %s:\n%s", c.LogPath, c.Tail(6000))
			}
			if e.cloud != nil {
				t.Logf("the end of %s:\n%s", e.cloud.LogPath, e.cloud.Tail(3000))
			}
		}
	})
	return e
}

func (e *env) startCloud(addr string) {
	e.t.Helper()
	c, err := stack.StartCloud(e.t.Context(), e.bins.Cloud, e.dir, stack.CloudOptions{Addr: addr, ProvisionDelay: time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	e.cloud = c
}

func (e *env) startCCM(name string, extra ...string) *stack.CCM {
	e.t.Helper()
	c, err := stack.StartCCM(e.t.Context(), e.bins.CCM, e.cp, e.dir, e.cloudConfig, stack.CCMOptions{Name: name, ClusterName: clusterName, Extra: extra})
	if err != nil {
		e.t.Fatal(err)
	}
	e.ccms = append(e.ccms, c)
	return c
}

// addNode starts a fake Node on the next loopback address and registers
// it; it returns the Node and when its creation started.
func (e *env) addNode() (*stack.FakeNode, time.Time) {
	e.t.Helper()
	e.nextNode++
	i := e.nextNode
	var ports []int32
	for p := range nodePorts {
		ports = append(ports, int32(firstNodePort+p))
	}
	n, err := stack.StartFakeNode(fmt.Sprintf("node-%d", i), fmt.Sprintf("127.0.1.%d", i), fmt.Sprintf("i-%04d", i), ports...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.nodes = append(e.nodes, n)
	start := time.Now()
	if _, err := stack.RegisterNode(e.t.Context(), e.cloud, e.cp, n); err != nil {
		e.t.Fatal(err)
	}
	return n, start
}

// poll waits for f with a deadline, failing the test.
func (e *env) poll(timeout time.Duration, what string, f func() error) {
	e.t.Helper()
	if err := stack.Poll(e.t.Context(), timeout, what, f); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) node(name string) *corev1.Node {
	e.t.Helper()
	n, err := e.admin.CoreV1().Nodes().Get(e.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func initialized(n *corev1.Node) error {
	for _, t := range n.Spec.Taints {
		if t.Key == "node.cloudprovider.kubernetes.io/uninitialized" {
			return fmt.Errorf("node %s still has the uninitialized taint", n.Name)
		}
	}
	if n.Spec.ProviderID == "" {
		return fmt.Errorf("node %s has no providerID", n.Name)
	}
	return nil
}

// service creates a LoadBalancer Service on node port firstNodePort+i.
func (e *env) service(name string, i int, annotations map[string]string) *corev1.Service {
	e.t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{
				Name: "tcp", Protocol: corev1.ProtocolTCP, Port: 80,
				TargetPort: intstr.FromInt32(8080), NodePort: int32(firstNodePort + i),
			}},
		},
	}
	created, err := e.admin.CoreV1().Services(namespace).Create(e.t.Context(), svc, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return created
}

func (e *env) getService(name string) *corev1.Service {
	e.t.Helper()
	s, err := e.admin.CoreV1().Services(namespace).Get(e.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// ingress waits for the Service's ingress IP.
func (e *env) ingress(name string, timeout time.Duration) corev1.LoadBalancerIngress {
	e.t.Helper()
	var in corev1.LoadBalancerIngress
	e.poll(timeout, "an ingress IP for Service "+name, func() error {
		s := e.getService(name)
		if len(s.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("no ingress yet")
		}
		in = s.Status.LoadBalancer.Ingress[0]
		return nil
	})
	return in
}

// owned returns the cloud's load balancers owned by svc.
func (e *env) owned(svc *corev1.Service) []*cloud.LoadBalancer {
	e.t.Helper()
	key := lb.Key{Cluster: clusterName, UID: svc.UID}
	list, err := e.cloud.Client.ListLoadBalancers(e.t.Context(), map[string]string{provider.TagOwner: key.String()})
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

// eventCount sums the counts of the Service's Events with reason.
func (e *env) eventCount(svc, reason string) int {
	e.t.Helper()
	list, err := e.admin.CoreV1().Events(namespace).List(e.t.Context(), metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + svc + ",reason=" + reason,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, ev := range list.Items {
		n += max(int(ev.Count), 1)
		if ev.Series != nil {
			n += int(ev.Series.Count)
		}
	}
	return n
}

func (e *env) lease(name string) *coordinationv1.Lease {
	e.t.Helper()
	l, err := e.admin.CoordinationV1().Leases("kube-system").Get(e.t.Context(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

func holder(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func acquired(c *stack.CCM, lease string) bool {
	return strings.Contains(c.Log(), acquiredLine(lease))
}

// acquiredLine is client-go's log line for a lease taken.
func acquiredLine(lease string) string {
	return `"Successfully acquired lease" lock="kube-system/` + lease + `"`
}

// sum adds the values of the series named name whose labels include
// labels.
func sum(series []stack.Series, name string, labels map[string]string) float64 {
	var total float64
	for _, s := range series {
		if s.Name != name {
			continue
		}
		match := true
		for k, v := range labels {
			if s.Labels[k] != v {
				match = false
			}
		}
		if match {
			total += s.Value
		}
	}
	return total
}

// consistently checks f every 100 ms for d (a bounded wait: the thing
// checked is that nothing happens).
func (e *env) consistently(d time.Duration, what string, f func() error) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	err := stack.Poll(e.t.Context(), d+time.Second, what, func() error {
		if err := f(); err != nil {
			return stack.Permanent(err)
		}
		if time.Now().Before(deadline) {
			return fmt.Errorf("still checking")
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

var forbidden = regexp.MustCompile(`(?i)forbidden`)

func (e *env) checkNoForbidden() {
	e.t.Helper()
	for _, c := range e.ccms {
		for line := range strings.Lines(c.Log()) {
			if forbidden.MatchString(line) {
				e.t.Errorf("%s: a forbidden line (missing RBAC): %s", c.Name, strings.TrimSpace(line))
			}
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestEndToEnd runs the example CCM against the control plane and the
// local cloud, through the steps of a cluster's life, in order.
func TestEndToEnd(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ccm := e.startCCM("ccm-a")
	e.poll(30*time.Second, "ccm-a to take the lease", func() error {
		if !acquired(ccm, mainLease) {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	var nodes []*stack.FakeNode
	t.Run("nodes-initialized", func(t *testing.T) {
		var slowest time.Duration
		for range 3 {
			n, start := e.addNode()
			nodes = append(nodes, n)
			e.poll(60*time.Second, "node "+n.Name+" to be initialized", func() error {
				return initialized(e.node(n.Name))
			})
			took := time.Since(start)
			slowest = max(slowest, took)
			t.Logf("figure: Node %s creation -> initialized: %v", n.Name, took.Round(time.Millisecond))
		}
		t.Logf("figure: Node creation -> initialized, slowest of 3: %v", slowest.Round(time.Millisecond))
		for _, n := range nodes {
			node := e.node(n.Name)
			if want := provider.ProviderID(n.InstanceID); node.Spec.ProviderID != want {
				t.Errorf("node %s: providerID %q, want %q", n.Name, node.Spec.ProviderID, want)
			}
			for k, v := range map[string]string{
				corev1.LabelInstanceTypeStable: "local.small",
				corev1.LabelTopologyZone:       "local-a",
				corev1.LabelTopologyRegion:     "local",
			} {
				if node.Labels[k] != v {
					t.Errorf("node %s: label %s=%q, want %q", n.Name, k, node.Labels[k], v)
				}
			}
			if !slices.Contains(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: n.IP}) {
				t.Errorf("node %s: addresses %v lack InternalIP %s", n.Name, node.Status.Addresses, n.IP)
			}
		}
	})

	t.Run("pod-cidrs-and-routes", func(t *testing.T) {
		if len(nodes) == 0 {
			t.Fatal("an earlier step failed: no Nodes")
		}
		cidrs := map[string]string{}
		for _, n := range nodes {
			e.poll(30*time.Second, "a pod CIDR for "+n.Name, func() error {
				node := e.node(n.Name)
				if len(node.Spec.PodCIDRs) == 0 {
					return fmt.Errorf("no podCIDRs")
				}
				if other, dup := cidrs[node.Spec.PodCIDR]; dup {
					return stack.Permanent(fmt.Errorf("nodes %s and %s share pod CIDR %s", other, n.Name, node.Spec.PodCIDR))
				}
				cidrs[node.Spec.PodCIDR] = n.Name
				return nil
			})
		}
		e.poll(30*time.Second, "a route per node in the cloud", func() error {
			list, err := e.cloud.Client.ListRoutes(ctx, clusterName)
			if err != nil {
				return err
			}
			found := 0
			for _, r := range list {
				if cidrs[r.Destination] == r.Target {
					found++
				}
			}
			if found != len(cidrs) {
				return fmt.Errorf("%d of %d routes: %v", found, len(cidrs), list)
			}
			return nil
		})
		for _, n := range nodes {
			e.poll(30*time.Second, "NetworkUnavailable False on "+n.Name, func() error {
				for _, c := range e.node(n.Name).Status.Conditions {
					if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionFalse {
						return nil
					}
				}
				return fmt.Errorf("no NetworkUnavailable=False condition")
			})
		}
	})

	var first *corev1.Service
	var firstIP string
	t.Run("load-balancer-serves", func(t *testing.T) {
		start := time.Now()
		first = e.service("web", 0, nil)
		var answer string
		var in corev1.LoadBalancerIngress
		e.poll(60*time.Second, "the first byte through the load balancer", func() error {
			s := e.getService(first.Name)
			if len(s.Status.LoadBalancer.Ingress) == 0 {
				return fmt.Errorf("no ingress yet")
			}
			in = s.Status.LoadBalancer.Ingress[0]
			var err error
			answer, err = stack.Ask(net.JoinHostPort(in.IP, "80"))
			return err
		})
		t.Logf("figure: Service creation -> first byte through the load balancer: %v", time.Since(start).Round(time.Millisecond))
		firstIP = in.IP
		if in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeProxy {
			t.Errorf("ingress %s: ipMode %v, want Proxy", in.IP, in.IPMode)
		}
		if !slices.ContainsFunc(nodes, func(n *stack.FakeNode) bool { return n.Name == answer }) {
			t.Errorf("through %s:80 the answer was %q, want a node's name", in.IP, answer)
		}
		if got := e.owned(first); len(got) != 1 {
			t.Errorf("the cloud holds %d load balancers for %s, want 1", len(got), first.Name)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		// As an operator's Prometheus scrapes it: authenticated and
		// authorized through the API server, refused without a token.
		if _, err := ccm.Scrape(ctx, "", "ccmkit_"); err == nil || !strings.Contains(err.Error(), "403 Forbidden") {
			t.Errorf("an anonymous scrape: %v, want 403 Forbidden (system:anonymous is not authorized)", err)
		}
		token := e.cp.RESTConfig().BearerToken
		var series []stack.Series
		e.poll(10*time.Second, "ccmkit's metrics on ccm-a's /metrics", func() error {
			var err error
			if series, err = ccm.Scrape(ctx, token, "ccmkit_"); err != nil {
				return err
			}
			if sum(series, "ccmkit_routes_table_routes", nil) != float64(len(nodes)) {
				return fmt.Errorf("ccmkit_routes_table_routes is not %d yet", len(nodes))
			}
			return nil
		})
		t.Logf("figure: %d ccmkit_ series on ccm-a's /metrics", len(series))
		// The build's Kubernetes version stamp (see stack.Build).
		build, err := ccm.Scrape(ctx, token, "kubernetes_build_info")
		if err != nil {
			t.Fatal(err)
		}
		if len(build) != 1 || !strings.HasPrefix(build[0].Labels["git_version"], "v1.") {
			t.Errorf("kubernetes_build_info: %+v, want one series with git_version v1.*", build)
		}
		if strings.Contains(ccm.Log(), "no Kubernetes version stamp") {
			t.Error("the CCM logs that it has no Kubernetes version stamp")
		}
		for _, want := range []struct {
			name   string
			labels map[string]string
			min    float64
		}{
			{"ccmkit_build_info", map[string]string{"provider": provider.Name}, 1},
			{"ccmkit_cloud_calls_total", map[string]string{"block": "instances", "result": "ok"}, 1},
			{"ccmkit_cloud_calls_total", map[string]string{"block": "lb", "result": "ok"}, 2},
			{"ccmkit_cloud_calls_total", map[string]string{"block": "routes", "result": "ok"}, 1},
			{"ccmkit_cloud_call_duration_seconds_count", map[string]string{"block": "lb"}, 2},
			{"ccmkit_lb_writes_total", map[string]string{"kind": "create"}, 1},
			{"ccmkit_lb_pool_addresses", map[string]string{"state": "used"}, 1},
			{"ccmkit_instances_cache_requests_total", nil, 1},
			{"ccmkit_routes_writes_total", map[string]string{"result": "ok"}, 1},
		} {
			if got := sum(series, want.name, want.labels); got < want.min {
				t.Errorf("%s%v = %v, want at least %v", want.name, want.labels, got, want.min)
			}
		}
	})

	t.Run("resync-no-status-patch", func(t *testing.T) {
		if first == nil {
			t.Fatal("an earlier step failed: no load-balancer Service")
		}
		before := e.eventCount(first.Name, "EnsuredLoadBalancer")
		s := e.getService(first.Name)
		s.Annotations = map[string]string{"e2e.ccmkit.io/resync": "1"}
		s, err := e.admin.CoreV1().Services(namespace).Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rv := s.ResourceVersion
		e.poll(30*time.Second, "the service controller to re-sync "+first.Name, func() error {
			if e.eventCount(first.Name, "EnsuredLoadBalancer") <= before {
				return fmt.Errorf("no new EnsuredLoadBalancer event")
			}
			return nil
		})
		e.consistently(2*time.Second, "no write to "+first.Name+" after the re-sync", func() error {
			if got := e.getService(first.Name).ResourceVersion; got != rv {
				return fmt.Errorf("Service %s written after the re-sync: resourceVersion %s -> %s (a status patch)", first.Name, rv, got)
			}
			return nil
		})
	})

	t.Run("crash-while-pending", func(t *testing.T) {
		if first == nil {
			t.Fatal("an earlier step failed: no load-balancer Service")
		}
		if err := e.cloud.Client.Hold(ctx, "*"); err != nil {
			t.Fatal(err)
		}
		pending := e.service("pending", 1, nil)
		var held *cloud.LoadBalancer
		e.poll(30*time.Second, "a pending load balancer for "+pending.Name, func() error {
			list := e.owned(pending)
			if len(list) != 1 {
				return fmt.Errorf("%d load balancers", len(list))
			}
			held = list[0]
			return nil
		})
		if held.Status != cloud.LBProvisioning {
			t.Fatalf("load balancer %s is %s, want held provisioning", held.ID, held.Status)
		}
		polls := e.eventCount(pending.Name, "SyncLoadBalancerFailed")
		firstRV := e.getService(first.Name).ResourceVersion
		ccm.Kill()
		t.Logf("SIGKILLed ccm-a (pid %d) with %s pending", ccm.Pid(), held.ID)
		ccm = e.startCCM("ccm-a-restarted")
		e.poll(30*time.Second, "the restarted CCM to poll "+pending.Name, func() error {
			if e.eventCount(pending.Name, "SyncLoadBalancerFailed") <= polls {
				return fmt.Errorf("no new poll")
			}
			return nil
		})
		// A third Service, allocated by the restarted CCM's restored pool.
		third := e.service("after-restart", 2, nil)
		e.poll(30*time.Second, "a load balancer for "+third.Name, func() error {
			if n := len(e.owned(third)); n != 1 {
				return fmt.Errorf("%d load balancers", n)
			}
			return nil
		})
		if got := e.owned(pending); len(got) != 1 || got[0].ID != held.ID {
			t.Fatalf("after the restart the cloud holds %d load balancers for %s, want only %s", len(got), pending.Name, held.ID)
		}
		if err := e.cloud.Client.Release(ctx, "*"); err != nil {
			t.Fatal(err)
		}
		ips := map[string]string{firstIP: first.Name}
		for _, s := range []*corev1.Service{pending, third} {
			in := e.ingress(s.Name, 30*time.Second)
			if other, dup := ips[in.IP]; dup {
				t.Errorf("address %s handed out twice: %s and %s", in.IP, other, s.Name)
			}
			ips[in.IP] = s.Name
		}
		all, err := e.cloud.Client.ListLoadBalancers(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 {
			t.Errorf("the cloud holds %d load balancers, want 3", len(all))
		}
		e.poll(20*time.Second, "traffic through "+pending.Name+"'s load balancer", func() error {
			_, err := stack.Ask(net.JoinHostPort(e.getService(pending.Name).Status.LoadBalancer.Ingress[0].IP, "80"))
			return err
		})
		if rv := e.getService(first.Name).ResourceVersion; rv != firstRV {
			t.Errorf("the restart's full re-sync wrote Service %s (resourceVersion %s -> %s)", first.Name, firstRV, rv)
		}
	})

	t.Run("delete-frees-address", func(t *testing.T) {
		if first == nil {
			t.Fatal("an earlier step failed: no load-balancer Service")
		}
		if err := e.admin.CoreV1().Services(namespace).Delete(ctx, first.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.poll(30*time.Second, "Service "+first.Name+" to be gone", func() error {
			_, err := e.admin.CoreV1().Services(namespace).Get(ctx, first.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("still there (%v)", err)
		})
		if got := e.owned(first); len(got) != 0 {
			t.Fatalf("the cloud still holds %d load balancers of the deleted %s", len(got), first.Name)
		}
		e.poll(10*time.Second, "the load balancer to stop serving", func() error {
			if _, err := stack.Ask(net.JoinHostPort(firstIP, "80")); err == nil {
				return fmt.Errorf("%s:80 still answers", firstIP)
			}
			return nil
		})
		reuse := e.service("reuse", 3, map[string]string{lb.AnnotationIPs: firstIP})
		if in := e.ingress(reuse.Name, 30*time.Second); in.IP != firstIP {
			t.Errorf("a Service asking for the freed %s got %s", firstIP, in.IP)
		}
	})

	t.Run("bad-annotation", func(t *testing.T) {
		// As an operator sees it in kubectl describe: a Warning Event
		// naming the annotation and what it allows, recorded by the CCM
		// through the deploy RBAC, and no cloud write; fixing the value
		// makes the load balancer.
		bad := e.service("bad-annotation", 6, map[string]string{provider.AnnotationHealthCheckProtocol: "udp"})
		var msg string
		e.poll(30*time.Second, "an InvalidAnnotation Event on "+bad.Name, func() error {
			list, err := e.admin.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{
				FieldSelector: "involvedObject.name=" + bad.Name + ",reason=InvalidAnnotation",
			})
			if err != nil {
				return err
			}
			if len(list.Items) == 0 {
				return fmt.Errorf("no InvalidAnnotation Event yet")
			}
			if list.Items[0].Type != corev1.EventTypeWarning {
				return stack.Permanent(fmt.Errorf("InvalidAnnotation Event of type %s, want Warning", list.Items[0].Type))
			}
			msg = list.Items[0].Message
			return nil
		})
		for _, want := range []string{provider.AnnotationHealthCheckProtocol, `"udp"`, `one of "http", "tcp"`} {
			if !strings.Contains(msg, want) {
				t.Errorf("the Event says %q, want it to name %s", msg, want)
			}
		}
		if got := e.owned(bad); len(got) != 0 {
			t.Errorf("the cloud holds %d load balancers for a Service with a bad annotation, want 0", len(got))
		}
		s := e.getService(bad.Name)
		s.Annotations[provider.AnnotationHealthCheckProtocol] = "tcp"
		if _, err := e.admin.CoreV1().Services(namespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.ingress(bad.Name, 30*time.Second)
		if err := e.admin.CoreV1().Services(namespace).Delete(ctx, bad.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.poll(30*time.Second, "the load balancer of "+bad.Name+" to be gone", func() error {
			if n := len(e.owned(bad)); n != 0 {
				return fmt.Errorf("%d load balancers", n)
			}
			return nil
		})
	})

	t.Run("leader-failover", func(t *testing.T) {
		standby := e.startCCM("ccm-b")
		old := holder(e.lease(mainLease))
		if old == "" || !acquired(ccm, mainLease) || acquired(standby, mainLease) {
			t.Fatalf("lease holder %q: want ccm-a-restarted leading and ccm-b standing by", old)
		}
		ccm.Kill()
		killed := time.Now()
		e.poll(20*time.Second, "ccm-b to take the lease", func() error {
			if h := holder(e.lease(mainLease)); h == old || h == "" {
				return fmt.Errorf("holder still %q", h)
			}
			return nil
		})
		took := time.Since(killed)
		t.Logf("figure: leader SIGKILL -> lease taken by the standby: %v (lease 4s, renew deadline 3s, retry 1s)", took.Round(time.Millisecond))
		if took > 9*time.Second {
			t.Errorf("the standby took the lease %v after the leader died, want at most 9s", took)
		}
		ccm = standby
		s := e.service("after-failover", 4, nil)
		e.ingress(s.Name, 30*time.Second)
	})

	t.Run("leader-migration", func(t *testing.T) {
		ccm.Stop()
		migrating := e.startCCM("ccm-migration", "--enable-leader-migration")
		e.poll(30*time.Second, "ccm-migration to take both leases", func() error {
			if !acquired(migrating, mainLease) || !acquired(migrating, migrationLease) {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		if h := holder(e.lease(migrationLease)); h == "" {
			t.Fatalf("the %s lease has no holder", migrationLease)
		}
		// The migrated controllers (service, route, node IPAM, node
		// lifecycle) start once the migration lease is taken: shortly
		// after the lease line, so the log is polled for it.
		e.poll(10*time.Second, "the service controller to start after the migration lease was taken", func() error {
			log := migrating.Log()
			leaseAt := strings.Index(log, acquiredLine(migrationLease))
			if i := strings.LastIndex(log, "Starting service controller"); leaseAt < 0 || i < leaseAt {
				return fmt.Errorf("%q is not logged after the migration lease line", "Starting service controller")
			}
			return nil
		})
		s := e.service("under-migration", 5, nil)
		e.ingress(s.Name, 30*time.Second)
		n, _ := e.addNode()
		e.poll(30*time.Second, "a pod CIDR and a route for "+n.Name, func() error {
			node := e.node(n.Name)
			if err := initialized(node); err != nil {
				return err
			}
			if len(node.Spec.PodCIDRs) == 0 {
				return fmt.Errorf("no pod CIDR")
			}
			list, err := e.cloud.Client.ListRoutes(ctx, clusterName)
			if err != nil {
				return err
			}
			for _, r := range list {
				if r.Target == n.Name && r.Destination == node.Spec.PodCIDR {
					return nil
				}
			}
			return fmt.Errorf("no route to %s", n.Name)
		})
	})

	e.checkNoForbidden()
}
