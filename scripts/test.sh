#!/usr/bin/env bash
# The whole test suite: installs what the tests need when it is missing,
# then formatting, vet, a cgo-free build, the race-enabled tests (integration
# tests drive real mosquitto clients) and short fuzz runs.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for bin in mosquitto_pub:mosquitto-clients mosquitto_sub:mosquitto-clients mosquitto:mosquitto openssl:openssl sslscan:sslscan haproxy:haproxy; do
	command -v "${bin%%:*}" >/dev/null 2>&1 || need+=("${bin##*:}")
done
if ((${#need[@]})); then
	echo "test.sh: installing ${need[*]}" >&2
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi
# The Debian package starts a mosquitto service on 1883; tests use their own
# ports and do not need it.

# Tests that need a real HAProxy must run, not skip.
export MOAT_REQUIRE_HAPROXY=1

echo "== gofmt" >&2
unformatted=$(gofmt -l cmd internal test 2>/dev/null || true)
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "== go vet" >&2
go vet ./...

echo "== CGO_ENABLED=0 go build" >&2
CGO_ENABLED=0 go build -o /dev/null ./cmd/moat

echo "== go test -race" >&2
go test -race -count=1 -timeout 10m ./...

echo "== fuzz (short runs)" >&2
fuzz() { # package target seconds
	local out
	if ! out=$(go test -run '^$' -fuzz "^$2\$" -fuzztime "$3s" -fuzzminimizetime 0 "$1" 2>&1); then
		# The fuzzing engine can report "context deadline exceeded" when the
		# time runs out while it handles a new interesting input; that is
		# not a finding (a finding writes a failing input to testdata).
		if grep -q "context deadline exceeded" <<<"$out" && ! grep -q "Failing input written" <<<"$out"; then
			echo "fuzz $2: ok (stopped at the deadline)" >&2
			return 0
		fi
		echo "$out" >&2
		return 1
	fi
	echo "fuzz $2: ok" >&2
}
fuzz ./internal/packet FuzzDecode 20
fuzz ./internal/packet FuzzPublishReuse 5
fuzz ./internal/topic FuzzMatch 10
fuzz ./internal/store FuzzUnmarshal 5
fuzz ./internal/tlspsk FuzzClientHello 10
fuzz ./internal/tlspsk FuzzHandshakeMessages 10
fuzz ./internal/tlspsk FuzzRecordLayer 10
fuzz ./internal/tlspolicy FuzzDecryptPKCS8 5
fuzz ./internal/proxyproto FuzzParse 10

echo "== all tests passed" >&2
