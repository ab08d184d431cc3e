package ipam

import (
	"errors"
	"fmt"
	"net/netip"
)

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (checked with [errors.Is]); the message names the input at fault.
var (
	// ErrInvalid reports bad input: an unparsable or non-canonical prefix or
	// range, a subnet size that does not fit the cluster, a set that would be
	// too large (see [MaxSetSize]), a malformed pool or request.
	ErrInvalid = errors.New("invalid argument")

	// ErrOutOfRange reports an address or prefix that lies outside the set or
	// pools it was given to (including one of the other IP family).
	ErrOutOfRange = errors.New("out of range")

	// ErrFull reports that a [CIDRSet] or an [AddrSet] has no free item left.
	ErrFull = errors.New("no free item left")

	// ErrExhausted reports that every pool an [LBAllocator] may use for a
	// Service and an IP family has no free address left.
	ErrExhausted = errors.New("address pools exhausted")

	// ErrNoPool reports that no pool of an [LBAllocator] serves a Service
	// (namespace, selector, pool name) for an IP family it requires.
	ErrNoPool = errors.New("no eligible pool")

	// ErrNotEligible reports a requested address that lies in a pool the
	// Service may not use.
	ErrNotEligible = errors.New("pool not eligible for service")

	// ErrConflict reports an address held by another Service that it may not
	// share. The error is a [*ConflictError] naming the holder.
	ErrConflict = errors.New("address conflict")

	// ErrNotReady reports a call to an [LBAllocator] before [LBAllocator.Restore]
	// has completed: the allocator never guesses which addresses are free.
	ErrNotReady = errors.New("allocator not restored yet")
)

// ConflictError reports that Addr is held by Holder and may not be shared with
// the requesting Service. It matches [ErrConflict] with [errors.Is].
type ConflictError struct {
	// Addr is the contested address.
	Addr netip.Addr
	// Holder is the Service that holds Addr.
	Holder ServiceRef
	// Reason says why sharing is refused, e.g. "no sharing key" or
	// "port TCP/80 used by both".
	Reason string
}

// Error implements error.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("ipam: address %s is held by %s: %s", e.Addr, e.Holder, e.Reason)
}

// Unwrap returns [ErrConflict].
func (e *ConflictError) Unwrap() error { return ErrConflict }
