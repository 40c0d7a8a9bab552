#!/bin/sh
# Compare moat with mosquitto on this machine: see bench/compare/main.go.
#   bench/compare.sh            full run (about 14 minutes on 2 cores)
#   bench/compare.sh --quick    a smoke run of seconds
set -e
cd "$(dirname "$0")/.."
exec go run ./bench/compare "$@"
