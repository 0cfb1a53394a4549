#!/usr/bin/env bash
# Offline validation of the sluice Helm chart (./dev test runs it):
#   helm/sluice/ci/validate.sh [--keep DIR]
#   helm/sluice/ci/validate.sh --emit-config FILE   (the default rendered config)
# Installs its own tools on first use, into ${SLUICE_CACHE:-~/.cache/sluice}
# (reused afterwards): a Python venv with the pinned Helm v4 SDK
# (helm-python-sdk), kubernetes-validate and yamllint, and the npm CRD models
# for KEDA and prometheus-operator. promtool comes from Debian's prometheus
# package. Then render_test.py lints, renders, validates and asserts; the last
# line says "N passed, M failed" and the exit status is non-zero on any failure.
#
# SLUICE_BIN: the sluice binary for `sluice check --offline` (default
# target/debug/sluice, else target/release/sluice; the check is skipped, and
# says so, when neither exists).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
cache="${SLUICE_CACHE:-$HOME/.cache/sluice}"

HELM_SDK=helm-python-sdk==0.2.2
KUBE_VALIDATE=kubernetes-validate==1.37.0
YAMLLINT=yamllint==1.38.0
NPM_MODELS=(@kubernetes-models/keda@2.0.0 @kubernetes-models/prometheus-operator@6.0.0)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
step() { printf '== %s\n' "$*"; }

mkdir -p "$cache"
# One installer at a time (parallel test runs share the cache).
exec 9>"$cache/.chart-tools.lock"
flock 9

# Python tools, in a venv named after the pins: a pin change makes a new one.
pins="$HELM_SDK $KUBE_VALIDATE $YAMLLINT"
venv="$cache/chart-venv-$(printf '%s' "$pins" | sha256sum | cut -c1-12)"
if [ ! -f "$venv/.complete" ]; then
  step "installing $pins into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check $pins
  touch "$venv/.complete"
fi

# npm CRD models, installed into the cache (never into the repository).
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
models="$cache/chart-npm-$(printf '%s' "${NPM_MODELS[*]}" | sha256sum | cut -c1-12)"
if [ ! -f "$models/.complete" ]; then
  step "installing ${NPM_MODELS[*]} into $models"
  rm -rf "$models"
  mkdir -p "$models"
  (cd "$models" && npm install --silent --no-audit --no-fund --no-package-lock --prefix "$models" "${NPM_MODELS[@]}" >/dev/null)
  touch "$models/.complete"
fi

command -v promtool >/dev/null 2>&1 || apt_install prometheus
flock -u 9

bin="${SLUICE_BIN:-}"
if [ -n "$bin" ] && [ ! -x "$bin" ]; then
  echo "validate.sh: SLUICE_BIN=$bin is not an executable" >&2
  exit 1
fi
if [ -z "$bin" ]; then
  for candidate in "$repo/target/debug/sluice" "$repo/target/release/sluice"; do
    if [ -x "$candidate" ]; then bin="$candidate"; break; fi
  done
fi

if [ "${1:-}" = --emit-config ]; then
  # For ./dev image: just the config the chart's ConfigMap renders by default.
  exec "$venv/bin/python" "$here/render_test.py" --node-modules "$models/node_modules" --emit-config "$2"
fi

step "chart checks (helm SDK, kubernetes-validate, CRD models, sluice check --offline, promtool)"
exec "$venv/bin/python" "$here/render_test.py" --node-modules "$models/node_modules" --sluice "$bin" "$@"
