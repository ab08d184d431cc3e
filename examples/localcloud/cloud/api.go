package cloud

import (
	"fmt"
	"time"
)

// Instance states.
const (
	InstancePending    = "pending"
	InstanceRunning    = "running"
	InstanceStopped    = "stopped"
	InstanceTerminated = "terminated"
)

// Instance is a machine of the local cloud. Tests and the demo register
// instances (PUT /v1/instances/{id}); the CCM only reads them.
type Instance struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Type      string            `json:"type,omitempty"`
	Zone      string            `json:"zone,omitempty"`
	Region    string            `json:"region,omitempty"`
	State     string            `json:"state"`
	Addresses []Address         `json:"addresses,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	PodCIDRs  []string          `json:"podCIDRs,omitempty"`
}

// Address is one address of an instance: Type is a Kubernetes
// NodeAddressType (InternalIP, ExternalIP, Hostname, ...).
type Address struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// Load balancer states.
const (
	LBProvisioning = "provisioning"
	LBActive       = "active"
	LBDeleting     = "deleting"
	LBFailed       = "failed"
)

// Health-check protocols.
const (
	HealthHTTP = "http"
	HealthTCP  = "tcp"
)

// LoadBalancer is a load balancer of the local cloud: a TCP proxy listening
// on Addresses, one port per listener, to the targets' address:nodePort.
//
// The client sets the configuration fields (Name, Tags, Listeners, Targets,
// HealthCheck, SourceRanges, IPFamilies, RequestedAddresses,
// SessionAffinity, AffinityTimeoutSeconds, Options); the cloud keeps them
// exactly as given and sets the rest (ID, Status, Message, Addresses,
// CreatedAt, Health).
type LoadBalancer struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name"`
	// Tags are free-form key/values the cloud stores and filters lists by.
	Tags                   map[string]string `json:"tags,omitempty"`
	Listeners              []Listener        `json:"listeners"`
	Targets                []Target          `json:"targets,omitempty"`
	HealthCheck            HealthCheck       `json:"healthCheck"`
	SourceRanges           []string          `json:"sourceRanges,omitempty"`
	IPFamilies             []string          `json:"ipFamilies,omitempty"`
	RequestedAddresses     []string          `json:"requestedAddresses,omitempty"`
	SessionAffinity        string            `json:"sessionAffinity,omitempty"`
	AffinityTimeoutSeconds int32             `json:"affinityTimeoutSeconds,omitempty"`
	// Options are opaque key/values stored with the load balancer.
	Options map[string]string `json:"options,omitempty"`

	Status    string    `json:"status,omitempty"`
	Message   string    `json:"message,omitempty"`
	Addresses []string  `json:"addresses,omitempty"`
	CreatedAt time.Time `json:"createdAt,omitzero"`
	// ReadyAt is when provisioning ends (unless held).
	ReadyAt time.Time `json:"readyAt,omitzero"`
	// GoneAt is when a deleting load balancer disappears.
	GoneAt time.Time `json:"goneAt,omitzero"`
	// Health is the last health-check result per target ID and node port
	// ("<target>/<nodePort>": "healthy", "unhealthy"); not persisted.
	Health map[string]string `json:"health,omitempty"`
}

// Listener is one port of a load balancer. Protocol must be TCP.
type Listener struct {
	Name        string `json:"name,omitempty"`
	Protocol    string `json:"protocol"`
	Port        int32  `json:"port"`
	NodePort    int32  `json:"nodePort"`
	AppProtocol string `json:"appProtocol,omitempty"`
}

// Target is one backend machine: connections go to its first address that
// is an IP, at the listener's node port.
type Target struct {
	ID        string   `json:"id"`
	Name      string   `json:"name,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
}

// HealthCheck checks each target. Protocol http: GET http://address:Port
// Path answering 2xx. Protocol tcp: a connection to address:nodePort of
// each listener (Port and Path are stored but unused).
type HealthCheck struct {
	Protocol string `json:"protocol,omitempty"`
	Port     int32  `json:"port,omitempty"`
	Path     string `json:"path,omitempty"`
}

// Route is an entry of the cloud's route table: Destination through the
// instance running node Target. Cluster tags the route's owner ("" for a
// hand-made route).
type Route struct {
	Name          string    `json:"name"`
	Cluster       string    `json:"cluster,omitempty"`
	Destination   string    `json:"destination"`
	Target        string    `json:"target"`
	NextHop       string    `json:"nextHop,omitempty"`
	NodeAddresses []Address `json:"nodeAddresses,omitempty"`
}

// Info describes the cloud (GET /v1/info).
type Info struct {
	// AddressRange is where load-balancer addresses come from.
	AddressRange string `json:"addressRange"`
	// ProvisionDelay is how long a new load balancer stays provisioning.
	ProvisionDelay string `json:"provisionDelay"`
	// MaxRoutes is the route table's capacity (0: unlimited).
	MaxRoutes int `json:"maxRoutes,omitempty"`
}

// Error codes in an error answer.
const (
	CodeNotFound         = "NotFound"
	CodeNameInUse        = "NameInUse"
	CodeInvalid          = "Invalid"
	CodeAddressInUse     = "AddressInUse"
	CodeAddressExhausted = "AddressesExhausted"
	CodeTableFull        = "RouteTableFull"
	CodeUnauthorized     = "Unauthorized"
	CodeThrottled        = "Throttled"
	CodeInternal         = "Internal"
)

// ErrorBody is the JSON body of every non-2xx answer.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// LoadBalancer is the existing one, for CodeNameInUse.
	LoadBalancer *LoadBalancer `json:"loadBalancer,omitempty"`
	// Limit is the table's capacity, for CodeTableFull.
	Limit int `json:"limit,omitempty"`
}

// APIError is a non-2xx answer, as Client returns it.
type APIError struct {
	StatusCode int
	// RetryAfter is the Retry-After header, 0 if none.
	RetryAfter time.Duration
	ErrorBody
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("localcloud: HTTP %d", e.StatusCode)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (retry after %v)", e.RetryAfter)
	}
	return msg
}
