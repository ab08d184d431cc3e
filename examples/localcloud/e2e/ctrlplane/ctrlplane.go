package ctrlplane

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
)

// Options configures [Start]. The zero value is a working control plane.
type Options struct {
	// BinDir holds the etcd and kube-apiserver binaries. Default:
	// [DefaultBinDir].
	BinDir string

	// Dir holds logs, keys, kubeconfigs and etcd's data. Default: a new
	// temporary directory that Stop removes. [StartForTest] uses t.TempDir().
	Dir string

	// ServiceClusterIPRange is kube-apiserver's --service-cluster-ip-range.
	// Default: 10.96.0.0/16.
	ServiceClusterIPRange string

	// APIServerFlags and EtcdFlags are appended to each command line; a flag
	// given again overrides the one Start sets (the last value wins).
	APIServerFlags []string
	EtcdFlags      []string

	// StartTimeout bounds Start from its call until the API server is ready,
	// within the context's own deadline. Default: 2 minutes (kube-apiserver
	// is ready in a few seconds on an idle machine; CI shares its cores).
	StartTimeout time.Duration
}

const (
	defaultServiceRange = "10.96.0.0/16"
	defaultStartTimeout = 2 * time.Minute
	// maxAttempts bounds restarts of a process that lost a port race.
	maxAttempts = 5
	// adminName is the static-token identity in system:masters.
	adminName = "admin"
	// frontProxyName is the client certificate name the request-header
	// authenticator accepts: nothing in ccmkit's tests proxies requests.
	frontProxyName = "front-proxy-client"
	// serviceAccountIssuer is the iss claim of service-account tokens.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// User is an identity that kube-apiserver authenticates by a client
// certificate signed by the cluster CA. RBAC applies to it unless Groups
// holds system:masters.
type User struct {
	Name   string
	Groups []string
}

// ControlPlane is a running etcd and kube-apiserver. Its methods are safe for
// concurrent use; Stop may be called more than once.
type ControlPlane struct {
	dir        string
	removeDir  bool
	host       string // https://127.0.0.1:port
	etcdURL    string
	ca         *authority
	adminToken string
	kubeconfig string

	etcd, apiserver *process

	// Start-up durations, from each process's start to its readiness
	// (the successful attempt); StartForTest logs them.
	etcdReady, apiserverReady time.Duration

	stopOnce sync.Once
	stopErr  error
}

// Start starts etcd, then kube-apiserver against it, and returns when the
// API server is ready (/readyz, and the default and kube-system namespaces
// exist) with an admin kubeconfig written. ctx bounds the start-up only: the
// processes run until Stop. On error nothing is left running.
//
// A missing binary is an error wrapping [ErrNotBuilt]; a process that exits
// during start-up is an error holding the end of its log.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	logger := klog.FromContext(ctx)
	binDir := opts.BinDir
	if binDir == "" {
		if binDir, err = DefaultBinDir(); err != nil {
			return nil, err
		}
	}
	etcdBin, apiserverBin, err := lookBinaries(binDir)
	if err != nil {
		return nil, err
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = defaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	cp := &ControlPlane{dir: opts.Dir}
	if cp.dir == "" {
		if cp.dir, err = os.MkdirTemp("", "ctrlplane-"); err != nil {
			return nil, fmt.Errorf("ctrlplane: %w", err)
		}
		cp.removeDir = true
	}
	defer func() {
		if err != nil {
			// A process that exited during start-up is in err already.
			_ = cp.Stop()
			err = fmt.Errorf("ctrlplane: %w", err)
		}
	}()

	if err := cp.writeCredentials(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := cp.startEtcd(ctx, etcdBin, opts.EtcdFlags); err != nil {
		return nil, err
	}
	cp.etcdReady = time.Since(t0)
	logger.V(1).Info("etcd ready", "url", cp.etcdURL, "after", cp.etcdReady)

	t0 = time.Now()
	if err := cp.startAPIServer(ctx, apiserverBin, opts); err != nil {
		return nil, err
	}
	cp.apiserverReady = time.Since(t0)
	logger.V(1).Info("kube-apiserver ready", "host", cp.host, "after", cp.apiserverReady, "kubeconfig", cp.kubeconfig)
	return cp, nil
}

// Files in the control plane's directory.
const (
	caFile           = "ca.crt"
	frontProxyCAFile = "front-proxy-ca.crt"
	servingCertFile  = "apiserver.crt"
	servingKeyFile   = "apiserver.key"
	saKeyFile        = "sa.key"
	saPubFile        = "sa.pub"
	tokenFile        = "tokens.csv"
	adminKubeconfig  = "kubeconfig"
	etcdLogFile      = "etcd.log"
	apiserverLogFile = "kube-apiserver.log"
	etcdDataDir      = "etcd"
	apiserverCertDir = "certs"
)

// writeCredentials generates the CAs, the serving certificate, the
// service-account signing key and the admin token, and writes them to files.
func (cp *ControlPlane) writeCredentials() error {
	ca, err := newAuthority("ctrlplane-ca")
	if err != nil {
		return err
	}
	frontProxyCA, err := newAuthority("ctrlplane-front-proxy-ca")
	if err != nil {
		return err
	}
	servingCert, servingKey, err := ca.servingCert()
	if err != nil {
		return err
	}
	saKey, saPub, err := newSigningKey()
	if err != nil {
		return err
	}
	token, err := randomHex(32)
	if err != nil {
		return err
	}
	cp.ca, cp.adminToken = ca, token
	// token,user,uid,"group1,group2": the static token file's format.
	tokens := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", token, adminName, adminName)
	for name, data := range map[string][]byte{
		caFile:           ca.certPEM,
		frontProxyCAFile: frontProxyCA.certPEM,
		servingCertFile:  servingCert,
		servingKeyFile:   servingKey,
		saKeyFile:        saKey,
		saPubFile:        saPub,
		tokenFile:        []byte(tokens),
	} {
		if err := os.WriteFile(cp.path(name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context, bin string, extra []string) error {
	return retryPorts(2, func(ports []int) error {
		client, peer := "http://"+hostPort(ports[0]), "http://"+hostPort(ports[1])
		args := append([]string{
			"--name=ctrlplane",
			"--data-dir=" + cp.path(etcdDataDir),
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=ctrlplane=" + peer,
			"--initial-cluster-state=new",
			"--unsafe-no-fsync", // test data: durability buys nothing
		}, extra...)
		// A retry starts on an empty data directory: the failed attempt
		// may have written its member there.
		if err := os.RemoveAll(cp.path(etcdDataDir)); err != nil {
			return err
		}
		p, err := startProcess("etcd", bin, args, cp.path(etcdLogFile))
		if err != nil {
			return err
		}
		cp.etcd, cp.etcdURL = p, client
		return p.waitReady(ctx, func(ctx context.Context) error {
			return httpGetOK(ctx, http.DefaultClient, client+"/health")
		})
	})
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, bin string, opts Options) error {
	serviceRange := opts.ServiceClusterIPRange
	if serviceRange == "" {
		serviceRange = defaultServiceRange
	}
	err := retryPorts(1, func(ports []int) error {
		cp.host = "https://" + hostPort(ports[0])
		args := append([]string{
			"--etcd-servers=" + cp.etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", ports[0]),
			// The endpoint reconciler keeps the kubernetes Service's
			// endpoints on the advertise address, and refuses loopback.
			"--endpoint-reconciler-type=none",
			"--service-cluster-ip-range=" + serviceRange,
			"--tls-cert-file=" + cp.path(servingCertFile),
			"--tls-private-key-file=" + cp.path(servingKeyFile),
			"--cert-dir=" + cp.path(apiserverCertDir),
			"--client-ca-file=" + cp.path(caFile),
			"--token-auth-file=" + cp.path(tokenFile),
			"--authorization-mode=Node,RBAC",
			"--service-account-issuer=" + serviceAccountIssuer,
			"--service-account-key-file=" + cp.path(saPubFile),
			"--service-account-signing-key-file=" + cp.path(saKeyFile),
			// With a request-header CA the API server publishes
			// kube-system/extension-apiserver-authentication, which
			// delegated authentication (a CCM's secure port) reads.
			"--requestheader-client-ca-file=" + cp.path(frontProxyCAFile),
			"--requestheader-allowed-names=" + frontProxyName,
			"--requestheader-username-headers=X-Remote-User",
			"--requestheader-group-headers=X-Remote-Group",
			"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		}, opts.APIServerFlags...)
		client, err := rest.HTTPClientFor(cp.RESTConfig())
		if err != nil {
			return err
		}
		p, err := startProcess("kube-apiserver", bin, args, cp.path(apiserverLogFile))
		if err != nil {
			return err
		}
		cp.apiserver = p
		// /readyz does not wait for the system namespaces controller,
		// and tests create objects in default at once.
		return p.waitReady(ctx, func(ctx context.Context) error {
			for _, path := range []string{"/readyz", "/api/v1/namespaces/default", "/api/v1/namespaces/kube-system"} {
				if err := httpGetOK(ctx, client, cp.host+path); err != nil {
					return err
				}
			}
			return nil
		})
	})
	// The admin kubeconfig is written once the server is ready, so a file
	// that exists names a server that answered.
	if err != nil {
		return err
	}
	cp.kubeconfig = cp.path(adminKubeconfig)
	return cp.writeKubeconfig(cp.kubeconfig, adminName, &clientcmdapi.AuthInfo{Token: cp.adminToken})
}

// retryPorts runs attempt on n free ports, again on new ones (up to
// maxAttempts) when its process exited because a port was taken.
func retryPorts(n int, attempt func(ports []int) error) error {
	for i := 1; ; i++ {
		ports, err := freePorts(n)
		if err != nil {
			return err
		}
		err = attempt(ports)
		var exit *exitError
		if err == nil || i == maxAttempts || !errors.As(err, &exit) || !exit.portInUse() {
			return err
		}
	}
}

// httpGetOK is nil if GET url answers 200.
func httpGetOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// Host is the API server's URL, https://127.0.0.1:<port>.
func (cp *ControlPlane) Host() string { return cp.host }

// Dir is the directory holding the logs (etcd.log, kube-apiserver.log),
// credentials, kubeconfigs and etcd's data.
func (cp *ControlPlane) Dir() string { return cp.dir }

// Kubeconfig is the path of the admin kubeconfig (a token in
// system:masters), for a process under test or kubectl.
func (cp *ControlPlane) Kubeconfig() string { return cp.kubeconfig }

// RESTConfig returns a new admin client configuration (a token in
// system:masters: RBAC does not apply to it).
func (cp *ControlPlane) RESTConfig() *rest.Config {
	cfg := cp.baseConfig()
	cfg.BearerToken = cp.adminToken
	return cfg
}

// RESTConfigFor returns a client configuration that authenticates as u with
// a new client certificate: RBAC applies to it.
func (cp *ControlPlane) RESTConfigFor(u User) (*rest.Config, error) {
	certPEM, keyPEM, err := cp.userCert(u)
	if err != nil {
		return nil, err
	}
	cfg := cp.baseConfig()
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	return cfg, nil
}

// WriteKubeconfig writes a self-contained kubeconfig (credentials embedded,
// mode 0600) at path that authenticates as u with a new client certificate,
// for a process under test such as a cloud-controller-manager with its own
// ClusterRoles.
func (cp *ControlPlane) WriteKubeconfig(path string, u User) error {
	certPEM, keyPEM, err := cp.userCert(u)
	if err != nil {
		return err
	}
	return cp.writeKubeconfig(path, u.Name, &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM})
}

func (cp *ControlPlane) userCert(u User) (certPEM, keyPEM []byte, err error) {
	if u.Name == "" {
		return nil, nil, errors.New("ctrlplane: a User needs a Name")
	}
	certPEM, keyPEM, err = cp.ca.clientCert(u)
	if err != nil {
		return nil, nil, fmt.Errorf("ctrlplane: %w", err)
	}
	return certPEM, keyPEM, nil
}

// baseConfig trusts the cluster CA and lifts client-go's default client-side
// rate limit (5 QPS), which only slows tests down.
func (cp *ControlPlane) baseConfig() *rest.Config {
	return &rest.Config{
		Host:            cp.host,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.ca.certPEM},
		QPS:             100,
		Burst:           200,
	}
}

func (cp *ControlPlane) writeKubeconfig(path, user string, auth *clientcmdapi.AuthInfo) error {
	const name = "ctrlplane"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: cp.host, CertificateAuthorityData: cp.ca.certPEM}
	cfg.AuthInfos[user] = auth
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	cfg.CurrentContext = name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("ctrlplane: kubeconfig: %w", err)
	}
	return nil
}

// Stop kills kube-apiserver, then etcd (SIGKILL: their state is disposable),
// waits for both to exit, and removes the directory if Start created it. It
// returns an error if a process had exited before Stop (it crashed). Later
// calls return the first call's result.
func (cp *ControlPlane) Stop() error {
	cp.stopOnce.Do(func() {
		var errs []error
		for _, p := range []*process{cp.apiserver, cp.etcd} {
			if p != nil {
				errs = append(errs, p.kill())
			}
		}
		if cp.removeDir {
			errs = append(errs, os.RemoveAll(cp.dir))
		}
		if err := errors.Join(errs...); err != nil {
			cp.stopErr = fmt.Errorf("ctrlplane: stop: %w", err)
		}
	})
	return cp.stopErr
}

func (cp *ControlPlane) path(name string) string { return filepath.Join(cp.dir, name) }

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
