package ipam

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// checkBitmap verifies the tree's summary bits and counts against its leaves.
func checkBitmap(t *testing.T, b *bitmap) {
	t.Helper()
	var walk func(n *node, level int) uint64
	walk = func(n *node, level int) uint64 {
		var count uint64
		for i := range 64 {
			var full bool
			var c uint64
			if level == 1 {
				full = n.words[i] == ^uint64(0)
				c = uint64(bits.OnesCount64(n.words[i]))
			} else if k := n.kids[i]; k != nil {
				c = walk(k, level-1)
				full = c == span(level-1)
			} else {
				full = n.full>>i&1 == 1
				if full {
					c = span(level - 1)
				}
			}
			if got := n.full>>i&1 == 1; got != full {
				t.Fatalf("level %d child %d: full bit %v, want %v", level, i, got, full)
			}
			count += c
		}
		if n.count != count {
			t.Fatalf("level %d: count %d, want %d", level, n.count, count)
		}
		return count
	}
	total := walk(b.root, b.levels)
	if pad := span(b.levels) - b.size; total != b.used+pad {
		t.Fatalf("tree holds %d used, want %d + %d padding", total, b.used, pad)
	}
}

// TestBitmapModel drives random single and range operations on bitmaps of
// awkward sizes and checks every result against a map.
func TestBitmapModel(t *testing.T) {
	for _, size := range []uint64{1, 2, 63, 64, 65, 4095, 4096, 4097, 1 << 18, 1<<18 + 3, 300000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(size, 7))
			b := newBitmap(size)
			model := map[uint64]bool{}
			hint := uint64(0) // no free item below hint
			lowestFree := func() (uint64, bool) {
				for i := hint; i < size; i++ {
					if !model[i] {
						hint = i
						return i, true
					}
				}
				hint = size
				return 0, false
			}
			for step := range 3000 {
				switch op := rng.IntN(10); {
				case op < 4:
					got, ok := b.allocNext()
					want, wantOK := lowestFree()
					if got != want || ok != wantOK {
						t.Fatalf("step %d: allocNext = %d,%v, want %d,%v", step, got, ok, want, wantOK)
					}
					if ok {
						model[got] = true
					}
				case op < 6:
					i := rng.Uint64N(size)
					if changed := b.setBit(i, false); changed != model[i] {
						t.Fatalf("step %d: clear(%d) changed=%v, want %v", step, i, changed, model[i])
					}
					delete(model, i)
					hint = min(hint, i)
				case op < 7:
					i := rng.Uint64N(size)
					if changed := b.setBit(i, true); changed == model[i] {
						t.Fatalf("step %d: set(%d) changed=%v", step, i, changed)
					}
					model[i] = true
				default:
					lo := rng.Uint64N(size)
					hi := lo + 1 + rng.Uint64N(min(size-lo, 1<<uint(rng.IntN(16))))
					set := op == 7 || op == 8
					if !set {
						hint = min(hint, lo)
					}
					var want uint64
					for i := lo; i < hi; i++ {
						if model[i] != set {
							want++
						}
						if set {
							model[i] = true
						} else {
							delete(model, i)
						}
					}
					if got := b.setRange(lo, hi, set); got != want {
						t.Fatalf("step %d: setRange(%d,%d,%v) = %d, want %d", step, lo, hi, set, got, want)
					}
				}
				if b.used != uint64(len(model)) {
					t.Fatalf("step %d: used %d, want %d", step, b.used, len(model))
				}
				if step%100 == 0 {
					checkBitmap(t, &b)
					for range 20 {
						i := rng.Uint64N(size)
						if b.test(i) != model[i] {
							t.Fatalf("step %d: test(%d) = %v, want %v", step, i, b.test(i), model[i])
						}
					}
				}
			}
			checkBitmap(t, &b)
		})
	}
}

// TestBitmapHugeLazy checks that a 2^48 bitmap is cheap and correct at both
// ends, and that wide ranges do not materialize nodes.
func TestBitmapHugeLazy(t *testing.T) {
	b := newBitmap(MaxSetSize)
	if b.levels != maxLevels {
		t.Fatalf("levels = %d, want %d", b.levels, maxLevels)
	}
	for want := range uint64(100) {
		if got, ok := b.allocNext(); !ok || got != want {
			t.Fatalf("allocNext = %d,%v, want %d", got, ok, want)
		}
	}
	if got := b.setRange(0, MaxSetSize, true); got != MaxSetSize-100 {
		t.Fatalf("setRange(all) = %d", got)
	}
	if _, ok := b.allocNext(); ok {
		t.Fatal("allocNext on a full bitmap succeeded")
	}
	last := uint64(MaxSetSize - 1)
	if !b.setBit(last, false) {
		t.Fatal("clear(last) changed nothing")
	}
	if got, ok := b.allocNext(); !ok || got != last {
		t.Fatalf("allocNext = %d,%v, want %d", got, ok, last)
	}
	b.setRange(1<<40, 1<<41, false)
	if got, ok := b.allocNext(); !ok || got != 1<<40 {
		t.Fatalf("allocNext = %d,%v, want %d", got, ok, uint64(1)<<40)
	}
	if b.used != MaxSetSize-(1<<40)+1 {
		t.Fatalf("used = %d", b.used)
	}
	checkBitmap(t, &b)
}
