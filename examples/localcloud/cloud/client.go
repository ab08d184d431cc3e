package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client is the local cloud's Go SDK: one method per API call. Errors from
// the cloud are *APIError (status code, error code, Retry-After); transport
// errors and timeouts are returned as net/http gives them. It is safe for
// concurrent use.
type Client struct {
	endpoint string
	token    string
	http     *http.Client
}

// ClientOptions configures a Client. The zero value means defaults.
type ClientOptions struct {
	// Token is the bearer token.
	Token string
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
	// HTTPClient, when set, is used instead of a new one (its Timeout
	// wins).
	HTTPClient *http.Client
}

// NewClient returns a Client of the cloud at endpoint ("http://host:port").
func NewClient(endpoint string, opts ClientOptions) *Client {
	hc := opts.HTTPClient
	if hc == nil {
		timeout := opts.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		hc = &http.Client{Timeout: timeout}
	}
	return &Client{endpoint: strings.TrimRight(endpoint, "/"), token: opts.Token, http: hc}
}

// do sends a request with an optional JSON body and decodes a JSON answer
// into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		ae := &APIError{StatusCode: resp.StatusCode}
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			ae.RetryAfter = time.Duration(secs) * time.Second
		}
		_ = json.Unmarshal(data, &ae.ErrorBody) // a body that is not ours leaves the status
		return ae
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("localcloud: %s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// IsNotFound reports whether err is the cloud's 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound
}

// Info returns the cloud's description.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var out Info
	return &out, c.do(ctx, http.MethodGet, "/v1/info", nil, &out)
}

// GetInstance returns the instance id.
func (c *Client) GetInstance(ctx context.Context, id string) (*Instance, error) {
	var out Instance
	if err := c.do(ctx, http.MethodGet, "/v1/instances/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListInstances returns every instance, or those named name when name is
// not empty.
func (c *Client) ListInstances(ctx context.Context, name string) ([]*Instance, error) {
	path := "/v1/instances"
	if name != "" {
		path += "?name=" + url.QueryEscape(name)
	}
	var out []*Instance
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// PutInstance registers or replaces an instance.
func (c *Client) PutInstance(ctx context.Context, in *Instance) error {
	return c.do(ctx, http.MethodPut, "/v1/instances/"+url.PathEscape(in.ID), in, nil)
}

// DeleteInstance removes an instance.
func (c *Client) DeleteInstance(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/instances/"+url.PathEscape(id), nil, nil)
}

// ListLoadBalancers returns the load balancers carrying every tag of tags.
func (c *Client) ListLoadBalancers(ctx context.Context, tags map[string]string) ([]*LoadBalancer, error) {
	q := url.Values{}
	for k, v := range tags {
		q.Add("tag", k+"="+v)
	}
	path := "/v1/loadbalancers"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []*LoadBalancer
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// GetLoadBalancer returns the load balancer id.
func (c *Client) GetLoadBalancer(ctx context.Context, id string) (*LoadBalancer, error) {
	var out LoadBalancer
	if err := c.do(ctx, http.MethodGet, "/v1/loadbalancers/"+url.PathEscape(id), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateLoadBalancer creates l (typically provisioning). A name in use is an
// *APIError with status 409, code CodeNameInUse and the existing load
// balancer.
func (c *Client) CreateLoadBalancer(ctx context.Context, l *LoadBalancer) (*LoadBalancer, error) {
	var out LoadBalancer
	if err := c.do(ctx, http.MethodPost, "/v1/loadbalancers", l, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateLoadBalancer replaces the configuration of load balancer id.
func (c *Client) UpdateLoadBalancer(ctx context.Context, id string, l *LoadBalancer) (*LoadBalancer, error) {
	var out LoadBalancer
	if err := c.do(ctx, http.MethodPut, "/v1/loadbalancers/"+url.PathEscape(id), l, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// SetTargets replaces the targets of load balancer id.
func (c *Client) SetTargets(ctx context.Context, id string, targets []Target) (*LoadBalancer, error) {
	if targets == nil {
		targets = []Target{}
	}
	var out LoadBalancer
	if err := c.do(ctx, http.MethodPut, "/v1/loadbalancers/"+url.PathEscape(id)+"/targets", targets, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteLoadBalancer deletes load balancer id (asynchronously when the
// cloud has a delete delay).
func (c *Client) DeleteLoadBalancer(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/loadbalancers/"+url.PathEscape(id), nil, nil)
}

// ListRoutes returns the routes tagged with cluster.
func (c *Client) ListRoutes(ctx context.Context, cluster string) ([]*Route, error) {
	var out []*Route
	return out, c.do(ctx, http.MethodGet, "/v1/routes?cluster="+url.QueryEscape(cluster), nil, &out)
}

// ListAllRoutes returns every route of the table.
func (c *Client) ListAllRoutes(ctx context.Context) ([]*Route, error) {
	var out []*Route
	return out, c.do(ctx, http.MethodGet, "/v1/routes", nil, &out)
}

// PutRoute creates r; an identical existing route is not an error.
func (c *Client) PutRoute(ctx context.Context, r *Route) error {
	return c.do(ctx, http.MethodPut, "/v1/routes/"+url.PathEscape(r.Name), r, nil)
}

// DeleteRoute deletes route name.
func (c *Client) DeleteRoute(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/routes/"+url.PathEscape(name), nil, nil)
}

// Hold keeps the load balancer named name ("*": every one) provisioning
// until Release.
func (c *Client) Hold(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPut, "/v1/holds/"+url.PathEscape(name), nil, nil)
}

// Release ends a Hold.
func (c *Client) Release(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/holds/"+url.PathEscape(name), nil, nil)
}
