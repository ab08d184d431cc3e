// Command gendoc writes the reference of ccmkit's own load-balancer
// annotations (lb.Annotations) as Markdown. lb's go:generate line runs it;
// lb's golden test keeps the file current.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/ccmkit/ccmkit/lb"
)

func main() {
	out := flag.String("o", "ANNOTATIONS.md", "file to write")
	flag.Parse()
	if err := os.WriteFile(*out, lb.Annotations.Markdown(lb.AnnotationsTitle), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
}
