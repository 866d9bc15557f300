#!/usr/bin/env bash
# Runs a command against the local control plane: starts it first when none is ready, and
# stops it afterwards only if this script started it.
#
# Usage: e2e/with-control-plane.sh COMMAND [ARG...]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
control_plane=$SCRIPT_DIR/control-plane.sh

started=0
if ! "$control_plane" status >/dev/null 2>&1; then
  "$control_plane" down >/dev/null 2>&1 || true
  started=1
fi

stop() {
  if [ "$started" = 1 ]; then
    "$control_plane" down >&2 || true
  fi
}
trap stop EXIT

eval "$("$control_plane" up)"
export KUBECONFIG
"$@"
