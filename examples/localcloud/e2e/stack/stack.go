package stack

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/ccmkit/ccmkit/examples/localcloud/cloud"
	"github.com/ccmkit/ccmkit/examples/localcloud/deploy"
	"github.com/ccmkit/ccmkit/examples/localcloud/e2e/ctrlplane"
	"github.com/ccmkit/ccmkit/examples/localcloud/provider"
)

// Cloud is a running localcloud process.
type Cloud struct {
	*Process
	URL, Token, StatePath, Addr string
	Client                      *cloud.Client
}

// CloudOptions configures StartCloud.
type CloudOptions struct {
	// Addr is the API's host:port (default a free loopback port; pass the
	// old one to restart a cloud).
	Addr string
	// ProvisionDelay is --provision-delay (default 1s).
	ProvisionDelay time.Duration
	// AddressRange is --address-range (default the cloud's).
	AddressRange string
}

// StartCloud starts the localcloud binary with its state in dir and waits
// until its API answers.
func StartCloud(ctx context.Context, bin, dir string, opts CloudOptions) (*Cloud, error) {
	addr := opts.Addr
	if addr == "" {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	delay := opts.ProvisionDelay
	if delay == 0 {
		delay = time.Second
	}
	c := &Cloud{URL: "http://" + addr, Token: "e2e-token", StatePath: filepath.Join(dir, "localcloud.json"), Addr: addr}
	args := []string{"--listen=" + addr, "--state=" + c.StatePath, "--token=" + c.Token,
		"--provision-delay=" + delay.String(), "--health-interval=1s"}
	if opts.AddressRange != "" {
		args = append(args, "--address-range="+opts.AddressRange)
	}
	p, err := StartProcess("localcloud", bin, args, filepath.Join(dir, "localcloud.log"))
	if err != nil {
		return nil, err
	}
	c.Process = p
	c.Client = cloud.NewClient(c.URL, cloud.ClientOptions{Token: c.Token, Timeout: 5 * time.Second})
	err = Poll(ctx, 30*time.Second, "the local cloud's API", func() error {
		if err := p.exitError(); err != nil {
			return Permanent(err)
		}
		_, err := c.Client.Info(ctx)
		return err
	})
	if err != nil {
		p.Kill()
		return nil, err
	}
	return c, nil
}

// WriteCloudConfig writes the CCM's --cloud-config for c at path.
func (c *Cloud) WriteCloudConfig(path string) error {
	data, err := json.Marshal(map[string]string{"endpoint": c.URL, "token": c.Token, "loadBalancerPollInterval": "1s"})
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// CCMUser is the CCM's own identity: the ServiceAccount
// kube-system/cloud-controller-manager of deploy/rbac.yaml.
var CCMUser = ctrlplane.User{
	Name:   "system:serviceaccount:kube-system:cloud-controller-manager",
	Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"},
}

// CCM is a running localcloud-ccm process.
type CCM struct {
	*Process
	SecurePort int
}

// CCMOptions configures StartCCM.
type CCMOptions struct {
	// Name names the log file (default "ccm").
	Name string
	// ClusterName is --cluster-name (default "e2e").
	ClusterName string
	// Extra flags, appended.
	Extra []string
}

// StartCCM starts the CCM binary against cp as CCMUser (RBAC from the deploy
// manifests applies), with cloudConfig, and waits for its /healthz. Its
// flags are the deploy manifest's container command (see
// [deploy.CCMCommand]) with the paths, ports, credentials and
// leader-election timings of this machine in place, then opts.Extra.
func StartCCM(ctx context.Context, bin string, cp *ctrlplane.ControlPlane, dir, cloudConfig string, opts CCMOptions) (*CCM, error) {
	name := opts.Name
	if name == "" {
		name = "ccm"
	}
	cluster := opts.ClusterName
	if cluster == "" {
		cluster = "e2e"
	}
	kubeconfig := filepath.Join(dir, name+".kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig, CCMUser); err != nil {
		return nil, err
	}
	command, err := deploy.CCMCommand()
	if err != nil {
		return nil, err
	}
	var ccm *CCM
	for attempt := 0; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		// The deploy manifest's command, with the flags that differ on
		// this machine (paths, ports, credentials, shorter timings) in
		// place of the manifest's, so that the flags an operator deploys
		// are the ones tested.
		args := mergeFlags(command[1:],
			"--cloud-config="+cloudConfig,
			"--kubeconfig="+kubeconfig,
			"--authentication-kubeconfig="+kubeconfig,
			"--authorization-kubeconfig="+kubeconfig,
			"--cluster-name="+cluster,
			"--secure-port="+strconv.Itoa(port),
			"--bind-address=127.0.0.1",
			"--route-reconciliation-period=2s",
			"--leader-elect-lease-duration=4s",
			"--leader-elect-renew-deadline=3s",
			"--leader-elect-retry-period=1s",
			"--v=2",
		)
		args = mergeFlags(args, opts.Extra...)
		p, err := StartProcess(name, bin, args, filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		ccm = &CCM{Process: p, SecurePort: port}
		hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		err = Poll(ctx, 60*time.Second, name+" /healthz", func() error {
			if err := p.exitError(); err != nil {
				return Permanent(err)
			}
			resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", port))
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("/healthz: %s", resp.Status)
			}
			return nil
		})
		if err == nil {
			return ccm, nil
		}
		p.Kill()
		if attempt >= 2 {
			return nil, err
		}
	}
}

// mergeFlags returns base with each of set in place of base's flag of the
// same name (the text before "="), or appended when base has none.
func mergeFlags(base []string, set ...string) []string {
	out := slices.Clone(base)
	name := func(arg string) string { n, _, _ := strings.Cut(arg, "="); return n }
	for _, arg := range set {
		if i := slices.IndexFunc(out, func(a string) bool { return name(a) == name(arg) }); i >= 0 {
			out[i] = arg
		} else {
			out = append(out, arg)
		}
	}
	return out
}

// BootstrapControllerBindings are kube-apiserver's bootstrap bindings of
// kube-controller-manager's controller roles to the ServiceAccounts
// kube-system/node-controller, service-controller and route-controller: the
// same names the CCM's controllers use. ApplyRBAC deletes them, so that the
// CCM runs with the deploy manifests' roles only (kube-apiserver re-creates
// them when it restarts).
var BootstrapControllerBindings = []string{
	"system:controller:node-controller",
	"system:controller:service-controller",
	"system:controller:route-controller",
}

// ApplyRBAC creates the objects of the deploy manifests' RBAC files with
// the admin client (idempotent), and deletes BootstrapControllerBindings.
func ApplyRBAC(ctx context.Context, admin kubernetes.Interface) error {
	for _, name := range BootstrapControllerBindings {
		err := admin.RbacV1().ClusterRoleBindings().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting the bootstrap binding %s: %w", name, err)
		}
	}
	objs, err := deploy.RBAC()
	if err != nil {
		return err
	}
	for _, o := range objs {
		conv := runtime.DefaultUnstructuredConverter
		var err error
		switch o.GetKind() {
		case "ServiceAccount":
			var v corev1.ServiceAccount
			if err = conv.FromUnstructured(o.Object, &v); err == nil {
				_, err = admin.CoreV1().ServiceAccounts(v.Namespace).Create(ctx, &v, metav1.CreateOptions{})
			}
		case "ClusterRole":
			var v rbacv1.ClusterRole
			if err = conv.FromUnstructured(o.Object, &v); err == nil {
				_, err = admin.RbacV1().ClusterRoles().Create(ctx, &v, metav1.CreateOptions{})
			}
		case "ClusterRoleBinding":
			var v rbacv1.ClusterRoleBinding
			if err = conv.FromUnstructured(o.Object, &v); err == nil {
				_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, &v, metav1.CreateOptions{})
			}
		case "Role":
			var v rbacv1.Role
			if err = conv.FromUnstructured(o.Object, &v); err == nil {
				_, err = admin.RbacV1().Roles(v.Namespace).Create(ctx, &v, metav1.CreateOptions{})
			}
		case "RoleBinding":
			var v rbacv1.RoleBinding
			if err = conv.FromUnstructured(o.Object, &v); err == nil {
				_, err = admin.RbacV1().RoleBindings(v.Namespace).Create(ctx, &v, metav1.CreateOptions{})
			}
		default:
			err = fmt.Errorf("unexpected kind %s", o.GetKind())
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("applying %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// ApplyDeployment creates the deploy manifest's Deployment with the admin
// client, and the Secret its --cloud-config volume mounts, holding the
// file cloudConfig: the API server validates and admits both as it would an
// operator's. No kubelet runs its pods here (the tests run the same
// command as a process, see [StartCCM]). It returns the Deployment as
// stored; one that exists already is an error.
func ApplyDeployment(ctx context.Context, admin kubernetes.Interface, cloudConfig string) (*appsv1.Deployment, error) {
	d, err := deploy.Deployment()
	if err != nil {
		return nil, err
	}
	command, err := deploy.CCMCommand()
	if err != nil {
		return nil, err
	}
	var path string
	for _, arg := range command {
		if v, ok := strings.CutPrefix(arg, "--cloud-config="); ok {
			path = v
		}
	}
	var secret *corev1.Secret
	for _, v := range d.Spec.Template.Spec.Volumes {
		for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
			if v.Secret != nil && m.Name == v.Name && strings.HasPrefix(path, m.MountPath+"/") {
				secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: v.Secret.SecretName, Namespace: d.Namespace}}
			}
		}
	}
	if secret == nil {
		return nil, fmt.Errorf("deployment.yaml: --cloud-config=%s is in no Secret volume", path)
	}
	data, err := os.ReadFile(cloudConfig)
	if err != nil {
		return nil, err
	}
	secret.Data = map[string][]byte{filepath.Base(path): data}
	if _, err := admin.CoreV1().Secrets(secret.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating the Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	got, err := admin.AppsV1().Deployments(d.Namespace).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating the Deployment %s/%s: %w", d.Namespace, d.Name, err)
	}
	return got, nil
}

// FakeNode is what a kubelet and kube-proxy would be for one Node: a TCP
// server on each node port (it answers "<node>\n" at once) and kube-proxy's
// /healthz on 10256, both on the Node's loopback address.
type FakeNode struct {
	Name, IP, InstanceID string
	listeners            []net.Listener
	wg                   sync.WaitGroup
}

// KubeProxyHealthPort is kube-proxy's health port, which the load
// balancers check by default.
const KubeProxyHealthPort = 10256

// StartFakeNode serves the node ports and kube-proxy's health check on ip.
func StartFakeNode(name, ip, instanceID string, nodePorts ...int32) (*FakeNode, error) {
	n := &FakeNode{Name: name, IP: ip, InstanceID: instanceID}
	for _, port := range nodePorts {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(int(port))))
		if err != nil {
			n.Close()
			return nil, err
		}
		n.listeners = append(n.listeners, ln)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s\n", name)
				c.Close()
			}
		}()
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(KubeProxyHealthPort)))
	if err != nil {
		n.Close()
		return nil, err
	}
	n.listeners = append(n.listeners, ln)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }), ReadHeaderTimeout: time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		_ = srv.Serve(ln)
	}()
	return n, nil
}

// Close stops the servers.
func (n *FakeNode) Close() {
	for _, ln := range n.listeners {
		ln.Close()
	}
	n.wg.Wait()
}

// NodeUser is the identity of the kubelet of node.
func NodeUser(node string) ctrlplane.User {
	return ctrlplane.User{Name: "system:node:" + node, Groups: []string{"system:nodes"}}
}

// RegisterNode registers n's instance in the cloud, then creates its Node
// as its kubelet would (with the uninitialized taint and the loopback
// InternalIP) and sets it Ready through the status subresource.
func RegisterNode(ctx context.Context, c *Cloud, cp *ctrlplane.ControlPlane, n *FakeNode) (*corev1.Node, error) {
	if err := c.Client.PutInstance(ctx, provider.InstanceOf(n.InstanceID, n.Name, n.IP)); err != nil {
		return nil, fmt.Errorf("registering instance %s: %w", n.InstanceID, err)
	}
	cfg, err := cp.RESTConfigFor(NodeUser(n.Name))
	if err != nil {
		return nil, err
	}
	kubelet, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"kubernetes.io/hostname": n.Name}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{
			Key: "node.cloudprovider.kubernetes.io/uninitialized", Value: "true", Effect: corev1.TaintEffectNoSchedule,
		}}},
	}
	created, err := kubelet.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating Node %s as its kubelet: %w", n.Name, err)
	}
	// Status through the status subresource, as a patch: the CCM may
	// initialize the Node meanwhile (a kubelet patches its status too).
	now := metav1.Now()
	patch, err := json.Marshal(map[string]any{"status": map[string]any{
		"addresses": []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP}, {Type: corev1.NodeHostName, Address: n.Name}},
		"conditions": []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status",
			LastHeartbeatTime: now, LastTransitionTime: now,
		}},
	}})
	if err != nil {
		return nil, err
	}
	updated, err := kubelet.CoreV1().Nodes().Patch(ctx, created.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return nil, fmt.Errorf("setting Node %s Ready as its kubelet: %w", n.Name, err)
	}
	return updated, nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// permanent marks an error Poll must not retry.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Permanent makes Poll stop at once with err.
func Permanent(err error) error { return permanent{err} }

// Poll calls f every 100 ms until it returns nil, returns a Permanent
// error, ctx ends or timeout passes; the error then says what was awaited
// and holds f's last error. Real processes need real waits: this is the
// one place that waits.
func Poll(ctx context.Context, timeout time.Duration, what string, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		err := f()
		var p permanent
		switch {
		case err == nil:
			return nil
		case errors.As(err, &p):
			return fmt.Errorf("waiting for %s: %w", what, p.error)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: not done within %v: %w", what, timeout, err)
		case <-t.C:
		}
	}
}

// Series is one scraped metric sample: its name, labels and value.
type Series struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Scrape reads the CCM's /metrics as an operator's Prometheus would, with
// cfg's bearer token (the CCM authenticates and authorizes it through the
// API server; the CCM's self-signed serving certificate is not verified),
// and returns the samples of the metrics whose names start with prefix. A
// status other than 200 is an error naming it.
func (c *CCM) Scrape(ctx context.Context, token, prefix string) ([]Series, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/metrics", c.SecurePort), nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /metrics: %s", c.Name, resp.Status)
	}
	return parseMetrics(string(body), prefix)
}

// parseMetrics parses the Prometheus text format's samples (name, optional
// {labels}, value; no timestamps, as the CCM writes them).
func parseMetrics(text, prefix string) ([]Series, error) {
	var out []Series
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || !strings.HasPrefix(line, prefix) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s := Series{Name: line[:i], Labels: map[string]string{}, Value: v}
		if j := strings.IndexByte(s.Name, '{'); j >= 0 {
			labels := strings.TrimSuffix(s.Name[j+1:], "}")
			s.Name = s.Name[:j]
			for labels != "" {
				k, rest, ok := strings.Cut(labels, `="`)
				if !ok {
					return nil, fmt.Errorf("metrics line %q: bad labels", line)
				}
				val, after, ok := strings.Cut(rest, `"`)
				if !ok {
					return nil, fmt.Errorf("metrics line %q: bad labels", line)
				}
				s.Labels[k] = val
				labels = strings.TrimPrefix(after, ",")
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// Ask connects to addr (a fake Node's port, or a load balancer in front of
// them) and returns the first line the far end sends: a FakeNode's name.
// It gives up after a second to connect and three to read.
func Ask(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}
