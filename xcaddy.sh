#!/usr/bin/env bash
# Build (and run) a Caddy carrying this plugin with xcaddy, the way Caddy
# users build plugins, as opposed to the in-repo ./cmd/caddy main that
# `make build` uses. This proves `xcaddy build --with
# github.com/ilp-edge/caddy-ilp` works from a checkout.
#
#   ./xcaddy.sh build [xcaddy args]   build, then list the non-standard modules
#   ./xcaddy.sh run [caddy args]      build, then run Caddyfile.example
#
# Environment:
#   OUTPUT         binary path (default: <repo>/caddy-xcaddy)
#   CADDY_VERSION  Caddy to build (default: v2.11.9, the version go.mod requires)
#   SKIP_BUILD=1   `run` reuses an existing binary instead of rebuilding
set -euo pipefail

readonly XCADDY_VERSION=v0.4.7
readonly MIN_GO_MINOR=26 # go.mod says go 1.26.0
CADDY_VERSION=${CADDY_VERSION:-v2.11.9}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
OUTPUT=${OUTPUT:-$REPO/caddy-xcaddy}
# Resolve a relative OUTPUT against the caller's directory, before we cd.
[[ $OUTPUT == /* ]] || OUTPUT=$PWD/$OUTPUT
# Outside the repo, so installing xcaddy never touches the plugin's go.mod.
XCADDY_BIN_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/caddy-ilp/bin

die() {
	echo "xcaddy.sh: $*" >&2
	exit 1
}

usage() {
	cat <<EOF
usage: $0 build [xcaddy build args]
           build Caddy $CADDY_VERSION with this plugin, list its extra modules
       $0 run [caddy run args]
           build, then run Caddyfile.example from the repo root

The binary goes to \$OUTPUT ($OUTPUT). 'run' always rebuilds
(seconds once the Go caches are warm) so it never serves a stale plugin;
SKIP_BUILD=1 reuses an existing binary. xcaddy $XCADDY_VERSION is taken
from PATH or installed into $XCADDY_BIN_DIR.
EOF
}

check_go() {
	command -v go >/dev/null || die "go not found on PATH; Go 1.$MIN_GO_MINOR or newer is required"
	local v
	v=$(go env GOVERSION) || die "'go env GOVERSION' failed"
	# Matches go1.26.8, go1.26rc1 and "devel go1.27-...".
	if [[ $v =~ go([0-9]+)\.([0-9]+) ]]; then
		local major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
		if ((major > 1 || (major == 1 && minor >= MIN_GO_MINOR))); then
			return 0
		fi
	fi
	die "found $v, but the plugin's go.mod needs Go 1.$MIN_GO_MINOR or newer"
}

# Prints the path of an xcaddy of the pinned version; installs it if neither
# PATH nor the cache has one.
find_xcaddy() {
	local x
	for x in "$(command -v xcaddy || true)" "$XCADDY_BIN_DIR/xcaddy"; do
		# `xcaddy version` prints e.g. "v0.4.7 h1:..."; only the first word counts.
		if [[ -x $x ]] && [[ $("$x" version 2>/dev/null | awk '{print $1; exit}') == "$XCADDY_VERSION" ]]; then
			echo "$x"
			return
		fi
	done
	install_xcaddy >&2
	echo "$XCADDY_BIN_DIR/xcaddy"
}

install_xcaddy() {
	echo "xcaddy.sh: installing xcaddy $XCADDY_VERSION into $XCADDY_BIN_DIR"
	mkdir -p "$XCADDY_BIN_DIR"
	local tmp
	tmp=$(mktemp -d)
	# A throwaway module rather than `go install ...@version`: that form needs
	# the proxy's version list and deprecation lookups, which some proxies
	# refuse; and `go get -tool` in the repo would add xcaddy's dependencies
	# to the module graph of everyone who imports the plugin.
	if ! (
		cd "$tmp" &&
			go mod init xt >/dev/null 2>&1 &&
			go get "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION" &&
			GOBIN=$XCADDY_BIN_DIR go install github.com/caddyserver/xcaddy/cmd/xcaddy
	); then
		rm -rf "$tmp"
		die "installing xcaddy $XCADDY_VERSION failed"
	fi
	rm -rf "$tmp"
	local got
	got=$("$XCADDY_BIN_DIR/xcaddy" version | awk '{print $1; exit}')
	[[ $got == "$XCADDY_VERSION" ]] || die "installed xcaddy reports '$got', want $XCADDY_VERSION"
}

# The plugin's module path is not published. xcaddy writes a replace to this
# checkout and then runs `go get` on the path; Go falls back to the replace
# only when the proxy chain ends in a "not found". A proxy that answers 403/400
# instead ends it with a hard error, so end the chain with "|off" (any error
# falls through to off, whose error counts as not found). The trailing
# "direct" goes: on an unpublished path it would only try, and fail, a VCS
# fetch. Everything else in the user's GOPROXY is kept.
fallthrough_goproxy() {
	local p
	p=$(go env GOPROXY)
	case $p in
	off | direct | *'|off') ;;
	*,off) p=${p%,off}'|off' ;;
	*,direct | *'|direct') p=${p%[,|]direct}'|off' ;;
	*) p=$p'|off' ;;
	esac
	echo "$p"
}

build() {
	local xcaddy goproxy
	xcaddy=$(find_xcaddy)
	goproxy=$(fallthrough_goproxy)
	echo "xcaddy.sh: building Caddy $CADDY_VERSION with caddy-ilp from $REPO (GOPROXY=$goproxy)"
	GOPROXY=$goproxy "$xcaddy" build "$CADDY_VERSION" \
		--with "github.com/ilp-edge/caddy-ilp=$REPO" \
		--output "$OUTPUT" "$@"
}

main() {
	local cmd=${1:-}
	case $cmd in
	build)
		shift
		check_go
		build "$@"
		"$OUTPUT" list-modules --skip-standard
		;;
	run)
		shift
		cd "$REPO"
		[[ -f Caddyfile.example ]] || die "$REPO/Caddyfile.example not found"
		if [[ ${SKIP_BUILD:-} == 1 && -x $OUTPUT ]]; then
			echo "xcaddy.sh: SKIP_BUILD=1, reusing $OUTPUT"
		else
			check_go
			build
		fi
		exec "$OUTPUT" run --config Caddyfile.example --adapter caddyfile "$@"
		;;
	'' | -h | --help | help)
		usage
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
