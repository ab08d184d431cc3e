#!/usr/bin/env bash
# Pins k8s.io/kubernetes's staging modules in this module's go.mod; the logic is
# shared with tools/ctrlplane in ../tools/gen-replaces.sh.
# Usage: ./gen-replaces.sh [k8s.io/kubernetes version, default v1.37.2]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "${here}/../tools/gen-replaces.sh" "${here}" "$@"
