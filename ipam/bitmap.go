package ipam

import (
	"math/bits"
	"sync"
)

// MaxSetSize is the largest number of items (subnets of a [CIDRSet], addresses
// of an [AddrSet]) one set may hold: 2^48. Larger sets are refused with
// [ErrInvalid] rather than silently truncated. It is far above what a cluster
// uses (2^48 /64 subnets is a /16 IPv6 cluster) and keeps every count in a
// uint64 and the bitmap tree at most 7 levels deep.
const MaxSetSize = 1 << 48

// The bitmap is a 64-ary tree. A bottom node (level 1) holds 64 leaf words of
// 64 bits each, one bit per item (set = used), so it covers 4096 items. An
// inner node at level l >= 2 holds 64 children of level l-1. Every node keeps
// a summary word "full" whose bit i is set when child i (a word at level 1, a
// node above) has no free item, so the lowest free item is found by following
// the lowest zero bit of full from the root down: O(log64 n), a handful of
// TrailingZeros64.
//
// Children are allocated lazily. A nil child is uniform: all used when its
// full bit is set, all free otherwise. So a set of 2^32 subnets costs one root
// until it is used, and occupying a huge range marks whole subtrees at once.
// Items past size (padding up to the root's span) are marked used at
// construction and never counted.
const maxLevels = 7

type node struct {
	full  uint64     // bit i: child i has no free item
	count uint64     // used items in this subtree, padding included
	kids  *[64]*node // children; nil at level 1
	words [64]uint64 // leaf words; level 1 only
}

type bitmap struct {
	size   uint64 // usable items are [0, size)
	used   uint64 // used items in [0, size)
	levels int    // level of the root, 1..maxLevels
	root   *node
}

// span returns the number of items a node at level l covers; span(0) is a
// leaf word.
func span(l int) uint64 { return 1 << (6 * (l + 1)) }

// newBitmap returns an empty bitmap of size items; 1 <= size <= MaxSetSize.
func newBitmap(size uint64) bitmap {
	b := bitmap{size: size, levels: 1}
	for span(b.levels) < size {
		b.levels++
	}
	b.root = newNode(b.levels, false)
	if end := span(b.levels); size < end {
		b.rangeOp(b.root, b.levels, 0, size, end, true)
	}
	return b
}

func newNode(level int, used bool) *node {
	n := &node{}
	if level > 1 {
		n.kids = new([64]*node)
	}
	if used {
		n.full = ^uint64(0)
		n.count = span(level)
		if level == 1 {
			for i := range n.words {
				n.words[i] = ^uint64(0)
			}
		}
	}
	return n
}

// allocNext marks the lowest free item used and returns it; ok is false when
// every item is used.
func (b *bitmap) allocNext() (uint64, bool) {
	if b.used == b.size {
		return 0, false
	}
	var path [maxLevels + 1]*node
	var digit [maxLevels + 1]uint
	var idx uint64
	n := b.root
	for l := b.levels; l > 1; l-- {
		d := uint(bits.TrailingZeros64(^n.full))
		path[l], digit[l] = n, d
		idx = idx<<6 | uint64(d)
		c := n.kids[d]
		if c == nil { // full bit clear: a uniform free subtree
			c = newNode(l-1, false)
			n.kids[d] = c
		}
		n = c
	}
	w := uint(bits.TrailingZeros64(^n.full))
	j := uint(bits.TrailingZeros64(^n.words[w]))
	n.words[w] |= 1 << j
	idx = (idx<<6|uint64(w))<<6 | uint64(j)
	b.used++
	b.markUsed(n, w, path[:b.levels+1], digit[:b.levels+1])
	return idx, true
}

// markUsed updates counts and full bits after a bit was set in word w of the
// bottom node n, whose ancestors are path[2:] with digits digit[2:].
func (b *bitmap) markUsed(n *node, w uint, path []*node, digit []uint) {
	n.count++
	if n.words[w] == ^uint64(0) {
		n.full |= 1 << w
	}
	childFull := n.full == ^uint64(0)
	for l := 2; l < len(path); l++ {
		p := path[l]
		p.count++
		if childFull {
			p.full |= 1 << digit[l]
		}
		childFull = p.full == ^uint64(0)
	}
}

// setBit marks item i (< size) used (set) or free; it reports whether the
// item changed.
func (b *bitmap) setBit(i uint64, set bool) bool {
	var path [maxLevels + 1]*node
	var digit [maxLevels + 1]uint
	n := b.root
	for l := b.levels; l > 1; l-- {
		d := uint(i>>(6*l)) & 63
		path[l], digit[l] = n, d
		c := n.kids[d]
		if c == nil {
			used := n.full>>d&1 == 1
			if used == set {
				return false // uniform subtree already in the wanted state
			}
			c = newNode(l-1, used)
			n.kids[d] = c
		}
		n = c
	}
	w, bit := uint(i>>6)&63, uint64(1)<<(i&63)
	if (n.words[w]&bit != 0) == set {
		return false
	}
	if set {
		n.words[w] |= bit
		b.used++
		b.markUsed(n, w, path[:b.levels+1], digit[:b.levels+1])
		return true
	}
	n.words[w] &^= bit
	b.used--
	n.count--
	n.full &^= 1 << w
	for l := 2; l <= b.levels; l++ {
		path[l].count--
		path[l].full &^= 1 << digit[l]
	}
	return true
}

// test reports whether item i (< size) is used.
func (b *bitmap) test(i uint64) bool {
	n := b.root
	for l := b.levels; l > 1; l-- {
		d := uint(i>>(6*l)) & 63
		c := n.kids[d]
		if c == nil {
			return n.full>>d&1 == 1
		}
		n = c
	}
	return n.words[(i>>6)&63]>>(i&63)&1 == 1
}

// setRange marks items [lo, hi) used (set) or free, hi <= size, and returns
// how many changed.
func (b *bitmap) setRange(lo, hi uint64, set bool) uint64 {
	if lo >= hi {
		return 0
	}
	changed := b.rangeOp(b.root, b.levels, 0, lo, hi, set)
	if set {
		b.used += changed
	} else {
		b.used -= changed
	}
	return changed
}

// rangeOp applies setRange to node n at level, covering [base, base+span),
// for the non-empty [lo, hi) inside it. Fully covered children become uniform
// (nil), so the cost is O(64 * levels) whatever the width of the range.
func (b *bitmap) rangeOp(n *node, level int, base, lo, hi uint64, set bool) uint64 {
	var total uint64
	if level == 1 {
		for w := (lo - base) >> 6; w <= (hi-1-base)>>6; w++ {
			wb := base + w<<6
			mask := ^uint64(0)
			if lo > wb {
				mask &= ^uint64(0) << (lo - wb)
			}
			if hi < wb+64 {
				mask &= ^uint64(0) >> (wb + 64 - hi)
			}
			if set {
				total += uint64(bits.OnesCount64(mask &^ n.words[w]))
				n.words[w] |= mask
			} else {
				total += uint64(bits.OnesCount64(mask & n.words[w]))
				n.words[w] &^= mask
			}
			if n.words[w] == ^uint64(0) {
				n.full |= 1 << w
			} else {
				n.full &^= 1 << w
			}
		}
	} else {
		cs := span(level - 1)
		for d := (lo - base) / cs; d <= (hi-1-base)/cs; d++ {
			cb := base + d*cs
			clo, chi := max(lo, cb), min(hi, cb+cs)
			c := n.kids[d]
			used := n.full>>d&1 == 1
			var ch uint64
			switch {
			case clo == cb && chi == cb+cs: // whole child: make it uniform
				switch {
				case c != nil && set:
					ch = cs - c.count
				case c != nil:
					ch = c.count
				case used != set:
					ch = cs
				}
				n.kids[d] = nil
				if set {
					n.full |= 1 << d
				} else {
					n.full &^= 1 << d
				}
			default:
				if c == nil {
					if used == set {
						continue
					}
					c = newNode(level-1, used)
					n.kids[d] = c
				}
				ch = b.rangeOp(c, level-1, cb, clo, chi, set)
				if c.full == ^uint64(0) {
					n.full |= 1 << d
				} else {
					n.full &^= 1 << d
				}
			}
			total += ch
		}
	}
	if set {
		n.count += total
	} else {
		n.count -= total
	}
	return total
}

// syncBitmap is a bitmap behind a mutex: the concurrency-safe core that
// CIDRSet and AddrSet share. Its size never changes, so reading it takes no
// lock.
type syncBitmap struct {
	mu sync.Mutex
	bm bitmap
}

func newSyncBitmap(size uint64) *syncBitmap { return &syncBitmap{bm: newBitmap(size)} }

func (s *syncBitmap) size() uint64 { return s.bm.size }

func (s *syncBitmap) allocNext() (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bm.allocNext()
}

// mark marks the items [lo, hi) used or free.
func (s *syncBitmap) mark(lo, hi uint64, used bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hi-lo == 1 {
		s.bm.setBit(lo, used)
	} else {
		s.bm.setRange(lo, hi, used)
	}
}

func (s *syncBitmap) test(i uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bm.test(i)
}

func (s *syncBitmap) allocated() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bm.used
}

func (s *syncBitmap) free() uint64 { return s.size() - s.allocated() }
