// Command demo runs ccmkit's example provider end to end on this machine
// and narrates it: etcd and kube-apiserver (package ctrlplane), the local
// cloud, the example cloud-controller-manager as its own ServiceAccount
// identity, three Nodes played by in-process kubelets, and a LoadBalancer
// Service that gets an address and serves traffic. It removes everything
// when it ends, on success, on error and on Ctrl-C.
//
// `make demo` builds what it needs and runs it:
//
//	go run ./examples/localcloud/cmd/demo --bin-dir=bin
//
// --bin-dir holds localcloud and localcloud-ccm (built first when missing)
// and the control plane's etcd and kube-apiserver (`make controlplane`).
// --stay keeps everything running after the walk-through, for kubectl and
// /metrics, until Ctrl-C; --keep keeps the logs and the cloud's state file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/ccmkit/ccmkit/examples/localcloud/e2e/ctrlplane"
	"github.com/ccmkit/ccmkit/examples/localcloud/e2e/stack"
)

func main() {
	binDir := flag.String("bin-dir", "bin", "directory of localcloud, localcloud-ccm, etcd and kube-apiserver")
	keep := flag.Bool("keep", false, "keep the working directory (logs, state file) instead of removing it")
	stay := flag.Bool("stay", false, "after the walk-through, keep the control plane, the local cloud, the CCM and the Nodes running until Ctrl-C, and print how to reach them (kubectl, /metrics)")
	flag.Parse()
	klog.SetOutput(discard{}) // ctrlplane's start-up notes; the demo narrates
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *binDir, *keep, *stay); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

var t0 = time.Now()

func say(format string, args ...any) {
	fmt.Printf("[%5.1fs] %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, binDir string, keep, stay bool) (err error) {
	binDir, err = filepath.Abs(binDir)
	if err != nil {
		return err
	}
	bins := stack.Binaries{CCM: filepath.Join(binDir, "localcloud-ccm"), Cloud: filepath.Join(binDir, "localcloud")}
	if !exists(bins.CCM) || !exists(bins.Cloud) {
		if bins, err = stack.Build(ctx, binDir, os.Stdout); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "ccmkit-demo-")
	if err != nil {
		return err
	}
	var cleanups []func()
	defer func() {
		say("cleaning up: stopping the CCM, the local cloud and the control plane")
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
		if keep || err != nil {
			say("logs and state kept in %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()

	say("starting etcd and kube-apiserver on loopback")
	if err := os.MkdirAll(filepath.Join(dir, "ctrlplane"), 0o700); err != nil {
		return err
	}
	cp, err := ctrlplane.Start(ctx, ctrlplane.Options{BinDir: binDir, Dir: filepath.Join(dir, "ctrlplane")})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { _ = cp.Stop() })
	say("control plane ready at %s (admin kubeconfig: %s)", cp.Host(), cp.Kubeconfig())
	admin := kubernetes.NewForConfigOrDie(cp.RESTConfig())
	if err := stack.ApplyRBAC(ctx, admin); err != nil {
		return err
	}
	say("applied examples/localcloud/deploy's RBAC: the CCM runs as kube-system/cloud-controller-manager, each controller as its own ServiceAccount")

	c, err := stack.StartCloud(ctx, bins.Cloud, dir, stack.CloudOptions{ProvisionDelay: 2 * time.Second})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, c.Stop)
	say("local cloud serving at %s (state file %s, load balancers provision in 2s)", c.URL, c.StatePath)
	cloudConfig := filepath.Join(dir, "cloud.json")
	if err := c.WriteCloudConfig(cloudConfig); err != nil {
		return err
	}
	ccm, err := stack.StartCCM(ctx, bins.CCM, cp, dir, cloudConfig, stack.CCMOptions{ClusterName: "demo"})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, ccm.Stop)
	say("localcloud-ccm running (pid %d, log %s); waiting for it to take the leader lease", ccm.Pid(), ccm.LogPath)
	if err := stack.Poll(ctx, time.Minute, "the leader lease", func() error {
		if !strings.Contains(ccm.Log(), `"Successfully acquired lease"`) {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		return err
	}

	var nodes []*stack.FakeNode
	for i := 1; i <= 3; i++ {
		n, err := stack.StartFakeNode(fmt.Sprintf("node-%d", i), fmt.Sprintf("127.0.1.%d", i), fmt.Sprintf("i-%04d", i), 30080)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		cleanups = append(cleanups, n.Close)
		start := time.Now()
		if _, err := stack.RegisterNode(ctx, c, cp, n); err != nil {
			return err
		}
		var node *corev1.Node
		if err := stack.Poll(ctx, time.Minute, n.Name+" initialized", func() error {
			node, err = admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if node.Spec.ProviderID == "" || len(node.Spec.PodCIDRs) == 0 {
				return errors.New("not yet")
			}
			return nil
		}); err != nil {
			return err
		}
		say("Node %s (InternalIP %s, uninitialized taint) initialized in %v: providerID %s, zone %s, type %s, pod CIDR %s",
			n.Name, n.IP, time.Since(start).Round(time.Millisecond), node.Spec.ProviderID,
			node.Labels[corev1.LabelTopologyZone], node.Labels[corev1.LabelInstanceTypeStable], node.Spec.PodCIDR)
	}
	if err := stack.Poll(ctx, time.Minute, "routes", func() error {
		list, err := c.Client.ListRoutes(ctx, "demo")
		if err != nil {
			return err
		}
		if len(list) < len(nodes) {
			return fmt.Errorf("%d routes", len(list))
		}
		for _, r := range list {
			say("route %s: %s via %s", r.Name, r.Destination, r.Target)
		}
		return nil
	}); err != nil {
		return err
	}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "hello"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": "hello"},
			Ports:    []corev1.ServicePort{{Name: "tcp", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080}},
		},
	}
	start := time.Now()
	if _, err := admin.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return err
	}
	say("created LoadBalancer Service default/hello (port 80 -> node port 30080); the cloud provisions its load balancer")
	var in corev1.LoadBalancerIngress
	if err := stack.Poll(ctx, time.Minute, "an address for default/hello", func() error {
		s, err := admin.CoreV1().Services("default").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(s.Status.LoadBalancer.Ingress) == 0 {
			return errors.New("no ingress yet")
		}
		in = s.Status.LoadBalancer.Ingress[0]
		return nil
	}); err != nil {
		return err
	}
	mode := "<none>"
	if in.IPMode != nil {
		mode = string(*in.IPMode)
	}
	say("default/hello got %s (ipMode %s) in %v", in.IP, mode, time.Since(start).Round(time.Millisecond))
	addr := net.JoinHostPort(in.IP, "80")
	for i := range 3 {
		var answer string
		if err := stack.Poll(ctx, 30*time.Second, "an answer through "+addr, func() error {
			answer, err = stack.Ask(addr)
			return err
		}); err != nil {
			return err
		}
		if i == 0 {
			say("first byte through the load balancer %v after the Service was created", time.Since(start).Round(time.Millisecond))
		}
		say("connected to %s: answered by %s", addr, answer)
	}

	if err := admin.CoreV1().Services("default").Delete(ctx, "hello", metav1.DeleteOptions{}); err != nil {
		return err
	}
	if err := stack.Poll(ctx, time.Minute, "default/hello's load balancer to go", func() error {
		_, err := admin.CoreV1().Services("default").Get(ctx, "hello", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return errors.New("the Service is still there")
		}
		list, err := c.Client.ListLoadBalancers(ctx, nil)
		if err != nil || len(list) > 0 {
			return fmt.Errorf("%d load balancers left (%v)", len(list), err)
		}
		return nil
	}); err != nil {
		return err
	}
	say("deleted default/hello: the CCM deleted its load balancer and released %s", in.IP)
	if n := strings.Count(strings.ToLower(ccm.Log()), "forbidden"); n > 0 {
		return fmt.Errorf("the CCM's log has %d forbidden lines: see %s", n, ccm.LogPath)
	}
	say("done: nodes initialized, pod CIDRs and routes, a load balancer that served traffic and was cleaned up; no RBAC denial in the CCM's log")
	if stay {
		say("staying up until Ctrl-C; try, from another shell:")
		fmt.Printf("    kubectl --kubeconfig %s get nodes -o wide\n", cp.Kubeconfig())
		fmt.Printf("    kubectl --kubeconfig %s create service loadbalancer web --tcp=80:8080   # then: get svc web -w\n", cp.Kubeconfig())
		fmt.Printf("    curl -sk -H 'Authorization: Bearer %s' https://127.0.0.1:%d/metrics | grep ^ccmkit_\n", cp.RESTConfig().BearerToken, ccm.SecurePort)
		fmt.Printf("    tail -f %s   # the CCM's log\n", ccm.LogPath)
		<-ctx.Done()
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
