#!/usr/bin/env bash
# Pins every k8s.io staging module that k8s.io/kubernetes replaces with a
# local ./staging/src directory to its published version (v1.X.Y -> v0.X.Y),
# reading the list from k8s.io/kubernetes's own go.mod, then tidies. Shared by
# every nested module that requires k8s.io/kubernetes (bench/, tools/ctrlplane/).
# Usage: tools/gen-replaces.sh <module dir> [k8s.io/kubernetes version, default v1.37.2]
set -euo pipefail

if [[ $# -lt 1 || ! -f "$1/go.mod" ]]; then
	echo "usage: $0 <module dir with a go.mod> [k8s.io/kubernetes version]" >&2
	exit 2
fi
cd "$1"

k8s_version="${2:-v1.37.2}"
staging_version="v0.${k8s_version#v1.}"

gomod=$(go mod download -json "k8s.io/kubernetes@${k8s_version}" |
	sed -n 's/^[[:space:]]*"GoMod":[[:space:]]*"\(.*\)",\{0,1\}$/\1/p')
if [[ -z "${gomod}" || ! -f "${gomod}" ]]; then
	echo "gen-replaces: cannot find the go.mod of k8s.io/kubernetes@${k8s_version}" >&2
	exit 1
fi

# Lines of the form "k8s.io/x => ./staging/src/k8s.io/x", inside a replace
# block or after the replace keyword.
modules=$(awk '
	{ if ($1 == "replace") { $1 = ""; $0 = $0 } }
	$2 == "=>" && $3 ~ /^\.\/staging\/src\// { print $1 }
' "${gomod}" | sort -u)
if [[ -z "${modules}" ]]; then
	echo "gen-replaces: no staging replace directives in ${gomod}" >&2
	exit 1
fi

# Drop the k8s.io replaces from an earlier run, keep the others (ccmkit => ../).
for old in $(go mod edit -json | sed -n 's/^[[:space:]]*"Path": "\(k8s\.io\/[^"]*\)",\{0,1\}$/\1/p' | sort -u); do
	go mod edit -dropreplace="${old}"
done
for m in ${modules}; do
	go mod edit -replace="${m}=${m}@${staging_version}"
done
go mod edit -require="k8s.io/kubernetes@${k8s_version}"
go mod tidy
echo "gen-replaces: pinned $(echo "${modules}" | wc -l) staging modules to ${staging_version} in $(pwd)/go.mod" >&2
