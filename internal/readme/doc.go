// Package readme holds the test that keeps the README's Go code compiling:
// it writes the README's package-main blocks into a scratch module that
// requires this checkout of ccmkit, then vets and tests it.
package readme
