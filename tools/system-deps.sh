#!/usr/bin/env bash
# Installs the system packages `make test` needs and a fresh machine lacks (Debian packages):
# the servers the tests start as throwaway processes, the polyglot clients' toolchains, nginx
# in front of real replicas, and Chromium for the browser tests. Called by `make test` and
# `.ci/run`; a machine that has everything installs nothing and prints one line.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
why=()
want() { need+=("$1"); why+=("  $1: $2"); }

command -v redis-server >/dev/null 2>&1 || want redis-server "the shared rate-limit budget (tests start a throwaway Redis)"
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || want postgresql "replicas on PostgreSQL (tests start a throwaway cluster)"
command -v nginx >/dev/null 2>&1 || want nginx "the load balancer of deploy/compose.yaml, run in front of real replicas"
command -v chromium >/dev/null 2>&1 || want chromium "headless browser tests (never a browser download)"
# Debian's golang-go is older than clients/go needs; Go 1.21+ fetches the toolchain go.mod asks
# for itself, through the Go module proxy.
command -v go >/dev/null 2>&1 || want golang-go "the Go client and the pinned Go tools (grpcurl, ghz, Jaeger)"
command -v node >/dev/null 2>&1 || want nodejs "the TypeScript client"
command -v npm >/dev/null 2>&1 || want npm "the TypeScript client's packages and buf"
command -v javac >/dev/null 2>&1 || want openjdk-17-jdk-headless "the Java client"
command -v mvn >/dev/null 2>&1 || want maven "the Java client's build"

if [ ${#need[@]} -eq 0 ]; then
  echo "system-deps: every system package is installed"
  exit 0
fi

echo "system-deps: installing ${#need[@]} Debian package(s) the tests need (once per machine, a few minutes):"
printf '%s\n' "${why[@]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "system-deps: not root and no password-less sudo; run as root:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${need[*]}" >&2
  exit 1
fi
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
echo "system-deps: installed ${need[*]}"
