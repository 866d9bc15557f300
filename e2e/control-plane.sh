#!/usr/bin/env bash
# Runs a local Kubernetes control plane (etcd, kube-apiserver and
# kube-controller-manager, no kubelet and no nodes) on 127.0.0.1 for the
# end-to-end tests. The binaries are built from the module versions pinned in
# e2e/controlplane/go.mod and cached, so only the first `up` or `build`
# compiles anything.
#
# Usage: e2e/control-plane.sh up|down|status|env|build|restart [COMPONENT]
#
#   up      Build the binaries if they are not cached, start every component
#           that is not running and wait until the control plane is ready.
#           Components that run already keep running, and an existing state
#           directory (certificates, kubeconfigs, etcd data) is reused, so `up`
#           also brings back a component that crashed. The last line on stdout
#           is `export KUBECONFIG=...`, so `eval "$(e2e/control-plane.sh up)"`
#           works. Progress messages go to stderr. When the control plane is
#           already ready, `up` only prints the export line.
#   restart [COMPONENT]
#           Stop COMPONENT (etcd, kube-apiserver or kube-controller-manager,
#           all three when omitted), then start it again with the same state
#           and continue like `up`, which also starts any other component that
#           is not running. Prints the export line like `up`.
#   down    Stop the processes that `up` started and delete the state directory.
#   status  Print the state of each component. Exits 0 only when all are
#           running and kube-apiserver /readyz returns ok.
#   env     Print the export line when the control plane is ready.
#   build   Build and cache the binaries without starting anything.
#
# Environment variables, with their defaults:
#   MEDIANEST_E2E_CACHE             cache root for binaries ($HOME/.cache/medianest-e2e)
#   MEDIANEST_E2E_STATE             certificates, kubeconfigs, etcd data, logs and
#                                   PID files ($MEDIANEST_E2E_CACHE/state)
#   MEDIANEST_E2E_APISERVER_PORT    kube-apiserver HTTPS port (16443)
#   MEDIANEST_E2E_ETCD_CLIENT_PORT  etcd client port (12379)
#   MEDIANEST_E2E_ETCD_PEER_PORT    etcd peer port (12380)
#   MEDIANEST_E2E_KCM_PORT          kube-controller-manager HTTPS port for /healthz,
#                                   0 disables it (0)
#   MEDIANEST_E2E_START_TIMEOUT     seconds `up` and `restart` wait for readiness (120)
#   MEDIANEST_E2E_STOP_TIMEOUT      seconds `down` and `restart` wait per process
#                                   after SIGTERM before they send SIGKILL (15)
#
# Every listener binds to 127.0.0.1 only.

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly MODULE_DIR=$SCRIPT_DIR/controlplane

readonly CACHE_ROOT=${MEDIANEST_E2E_CACHE:-$HOME/.cache/medianest-e2e}
readonly STATE_DIR=${MEDIANEST_E2E_STATE:-$CACHE_ROOT/state}
readonly APISERVER_PORT=${MEDIANEST_E2E_APISERVER_PORT:-16443}
readonly ETCD_CLIENT_PORT=${MEDIANEST_E2E_ETCD_CLIENT_PORT:-12379}
readonly ETCD_PEER_PORT=${MEDIANEST_E2E_ETCD_PEER_PORT:-12380}
readonly KCM_PORT=${MEDIANEST_E2E_KCM_PORT:-0}
readonly START_TIMEOUT=${MEDIANEST_E2E_START_TIMEOUT:-120}
readonly STOP_TIMEOUT=${MEDIANEST_E2E_STOP_TIMEOUT:-15}

readonly SERVICE_CLUSTER_IP_RANGE=10.96.0.0/12
# The first address of SERVICE_CLUSTER_IP_RANGE, which the apiserver assigns
# to the `kubernetes` Service. It is a SAN of the serving certificate.
readonly KUBERNETES_SERVICE_IP=10.96.0.1
readonly CLUSTER_NAME=medianest-e2e

# Start order. `down` stops the components in reverse order.
readonly COMPONENTS=(etcd kube-apiserver kube-controller-manager)

readonly PKI_DIR=$STATE_DIR/pki
readonly LOG_DIR=$STATE_DIR/logs
readonly PID_DIR=$STATE_DIR/pids
readonly ADMIN_KUBECONFIG=$STATE_DIR/admin.kubeconfig
readonly KCM_KUBECONFIG=$STATE_DIR/controller-manager.kubeconfig
# `down` deletes STATE_DIR recursively only when this file is in it, so a
# mistyped MEDIANEST_E2E_STATE cannot remove an unrelated directory.
readonly STATE_MARKER=$STATE_DIR/.medianest-e2e-state

log() {
  printf 'control-plane: %s\n' "$*" >&2
}

die() {
  log "error: $*"
  exit 1
}

# Prints the version that go.mod requires for the module $1.
required_version() {
  local version
  version=$(awk -v module="$1" '$1 == module && $2 ~ /^v/ { print $2; exit }' "$MODULE_DIR/go.mod")
  [[ -n $version ]] || die "$MODULE_DIR/go.mod does not require the module $1"
  printf '%s\n' "$version"
}

KUBERNETES_VERSION=$(required_version k8s.io/kubernetes)
ETCD_VERSION=$(required_version go.etcd.io/etcd/server/v3)
readonly KUBERNETES_VERSION ETCD_VERSION
# The folder name contains both versions, so changing go.mod selects a new
# cache entry instead of reusing binaries built from other sources.
readonly BIN_DIR=$CACHE_ROOT/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION/bin
readonly BINARIES=(etcd kube-apiserver kube-controller-manager kubectl)

validate_settings() {
  local name value
  for name in APISERVER_PORT ETCD_CLIENT_PORT ETCD_PEER_PORT KCM_PORT START_TIMEOUT STOP_TIMEOUT; do
    value=${!name}
    [[ $value =~ ^[0-9]+$ ]] || die "MEDIANEST_E2E_$name must be a non-negative integer, got '$value'"
  done
  for name in APISERVER_PORT ETCD_CLIENT_PORT ETCD_PEER_PORT KCM_PORT; do
    ((${!name} <= 65535)) || die "MEDIANEST_E2E_$name must be at most 65535, got '${!name}'"
  done
  for name in APISERVER_PORT ETCD_CLIENT_PORT ETCD_PEER_PORT; do
    ((${!name} > 0)) || die "MEDIANEST_E2E_$name must be a port number above 0, got '${!name}'"
  done
  local ports=("$APISERVER_PORT" "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT")
  ((KCM_PORT > 0)) && ports+=("$KCM_PORT")
  if [[ $(printf '%s\n' "${ports[@]}" | sort -u | wc -l) -ne ${#ports[@]} ]]; then
    die "the ports must differ from each other, got apiserver $APISERVER_PORT, etcd client $ETCD_CLIENT_PORT, etcd peer $ETCD_PEER_PORT, controller manager $KCM_PORT"
  fi
  [[ $STATE_DIR == /* ]] || die "MEDIANEST_E2E_STATE must be an absolute path, got '$STATE_DIR'"
}

# Serializes `up`, `restart`, `down` and `build` across concurrent invocations.
# The lock file sits next to the state directory because `down` deletes the
# directory.
acquire_lock() {
  mkdir -p "$(dirname "$STATE_DIR")"
  exec 9>>"$STATE_DIR.lock"
  if ! flock --nonblock 9; then
    log "waiting for another control-plane.sh that holds $STATE_DIR.lock"
    flock 9
  fi
}

# --- binaries ---------------------------------------------------------------

binaries_present() {
  local binary
  for binary in "${BINARIES[@]}"; do
    [[ -x $BIN_DIR/$binary ]] || return 1
  done
}

# Builds all four binaries with one `go build`, so the packages they share
# compile once. The output goes to a temporary folder and moves into BIN_DIR
# only after the build succeeds, so an interrupted build leaves no partial set.
build_binaries() {
  binaries_present && return 0
  command -v go >/dev/null || die "go was not found in PATH. Install the Go version named in $MODULE_DIR/go.mod or newer."

  local build_dir
  mkdir -p "$(dirname "$BIN_DIR")"
  build_dir=$(mktemp -d "$(dirname "$BIN_DIR")/build.XXXXXX")

  # kubectl and the servers report this version on `--version` and /version.
  # Without it they report v0.0.0-master.
  local major=${KUBERNETES_VERSION#v}
  major=${major%%.*}
  local minor=${KUBERNETES_VERSION#v*.}
  minor=${minor%%.*}
  local version_flags=""
  local package
  for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_flags+=" -X $package.gitVersion=$KUBERNETES_VERSION"
    version_flags+=" -X $package.gitMajor=$major -X $package.gitMinor=$minor"
    version_flags+=" -X $package.gitTreeState=clean"
  done

  log "building etcd $ETCD_VERSION and Kubernetes $KUBERNETES_VERSION into $BIN_DIR (a cold build compiles for several minutes)"
  local started=$SECONDS
  if ! (cd "$MODULE_DIR" && go build -mod=readonly -trimpath -ldflags="-s -w$version_flags" -o "$build_dir/" \
    go.etcd.io/etcd/server/v3 \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl); then
    rm -rf "$build_dir"
    die "go build failed in $MODULE_DIR"
  fi
  # `go build` names a binary after the last import path element that is not
  # a major version suffix, so go.etcd.io/etcd/server/v3 becomes `server`.
  mv "$build_dir/server" "$build_dir/etcd"

  mkdir -p "$BIN_DIR"
  local binary
  for binary in "${BINARIES[@]}"; do
    mv -f "$build_dir/$binary" "$BIN_DIR/$binary"
  done
  rmdir "$build_dir"
  log "built the binaries in $((SECONDS - started))s"
}

# --- certificates and kubeconfigs -------------------------------------------

# Runs openssl and prints its output only when it fails, because OpenSSL 3
# reports success on stderr too.
run_openssl() {
  local output
  if ! output=$(openssl "$@" 2>&1); then
    printf '%s\n' "$output" >&2
    die "openssl $1 failed while generating certificates in $PKI_DIR"
  fi
}

new_key() {
  run_openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
  chmod 600 "$1"
}

# Issues $PKI_DIR/$name.crt signed by the cluster CA.
# Arguments: name, subject, extendedKeyUsage, and an optional subjectAltName value.
issue_certificate() {
  local name=$1 subject=$2 extended_key_usage=$3 subject_alt_name=${4:-}
  local extensions=$PKI_DIR/$name.ext

  new_key "$PKI_DIR/$name.key"
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature"
    echo "extendedKeyUsage = $extended_key_usage"
    echo "subjectKeyIdentifier = hash"
    echo "authorityKeyIdentifier = keyid"
    if [[ -n $subject_alt_name ]]; then
      echo "subjectAltName = $subject_alt_name"
    fi
  } >"$extensions"

  run_openssl req -new -key "$PKI_DIR/$name.key" -subj "$subject" -out "$PKI_DIR/$name.csr"
  run_openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/ca.crt" -CAkey "$PKI_DIR/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 \
    -extfile "$extensions" -out "$PKI_DIR/$name.crt"
  rm "$extensions" "$PKI_DIR/$name.csr"
}

# Creates the CA, the apiserver serving certificate, the client certificates
# and the service account key pair once per state directory. No front-proxy
# (request header) CA is created, because nothing here serves an aggregated API.
generate_pki() {
  [[ -f $PKI_DIR/.complete ]] && return 0
  log "generating certificates in $PKI_DIR"
  rm -rf "$PKI_DIR"
  mkdir -p "$PKI_DIR"
  chmod 700 "$PKI_DIR"

  new_key "$PKI_DIR/ca.key"
  run_openssl req -x509 -new -key "$PKI_DIR/ca.key" -subj "/CN=$CLUSTER_NAME-ca" -days 3650 -sha256 \
    -addext "basicConstraints = critical, CA:TRUE" \
    -addext "keyUsage = critical, keyCertSign, cRLSign, digitalSignature" \
    -out "$PKI_DIR/ca.crt"

  issue_certificate apiserver "/CN=kube-apiserver" serverAuth \
    "DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local, IP:127.0.0.1, IP:$KUBERNETES_SERVICE_IP"
  # The apiserver maps the organization system:masters to cluster-admin.
  issue_certificate admin "/O=system:masters/CN=$CLUSTER_NAME-admin" clientAuth
  # The controller manager runs every controller with this identity. The
  # comment on start_controller_manager explains why it is in system:masters.
  issue_certificate controller-manager "/O=system:masters/CN=system:kube-controller-manager" clientAuth

  new_key "$PKI_DIR/sa.key"
  run_openssl pkey -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub"

  touch "$PKI_DIR/.complete"
}

# Writes a kubeconfig with embedded credentials.
# Arguments: output path, user name, certificate name in PKI_DIR.
write_kubeconfig() {
  local path=$1 user=$2 certificate=$3
  cat >"$path.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI_DIR/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI_DIR/$certificate.crt")
    client-key-data: $(base64 -w0 "$PKI_DIR/$certificate.key")
contexts:
- name: $CLUSTER_NAME
  context:
    cluster: $CLUSTER_NAME
    user: $user
current-context: $CLUSTER_NAME
EOF
  chmod 600 "$path.tmp"
  mv "$path.tmp" "$path"
}

# --- processes --------------------------------------------------------------

# Components that this invocation started. fail_start stops them again.
STARTED_COMPONENTS=()

# Prints the PID recorded for component $1, or returns 1 when the process is
# not running. A PID counts only when its command line contains STATE_DIR,
# which every component's flags do, so a reused PID is never taken for ours.
running_pid() {
  local pid_file=$PID_DIR/$1.pid pid command_line
  [[ -f $pid_file ]] || return 1
  pid=$(<"$pid_file")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # An exited child that is not reaped yet has an empty command line.
  command_line=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ $command_line == *"$STATE_DIR"* ]] || return 1
  printf '%s\n' "$pid"
}

# Starts component $1 with the command line that follows, in its own session
# so that signals sent to the caller's process group do not reach it.
# File descriptor 9 (the lock) is closed so the process does not hold the
# lock after this script exits.
start_component() {
  local name=$1
  shift
  log "starting $name (log: $LOG_DIR/$name.log)"
  setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$PID_DIR/$name.pid"
  STARTED_COMPONENTS+=("$name")
}

# Stops component $1 with SIGTERM, and with SIGKILL when it still runs after
# STOP_TIMEOUT seconds.
stop_component() {
  local name=$1 pid
  if pid=$(running_pid "$name"); then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while running_pid "$name" >/dev/null && ((SECONDS < deadline)); do
      sleep 0.1
    done
    if running_pid "$name" >/dev/null; then
      log "$name (pid $pid) did not exit within ${STOP_TIMEOUT}s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while running_pid "$name" >/dev/null; do
        sleep 0.1
      done
    fi
  fi
  rm -f "$PID_DIR/$name.pid"
}

stop_all() {
  local index
  for ((index = ${#COMPONENTS[@]} - 1; index >= 0; index--)); do
    stop_component "${COMPONENTS[index]}"
  done
}

# Prints the flags of component $1 that contain the MEDIANEST_E2E_*_PORT
# settings, one per line, exactly as its start function passes them.
port_flags() {
  case $1 in
    etcd)
      echo "--listen-client-urls=http://127.0.0.1:$ETCD_CLIENT_PORT"
      echo "--listen-peer-urls=http://127.0.0.1:$ETCD_PEER_PORT"
      ;;
    kube-apiserver)
      echo "--secure-port=$APISERVER_PORT"
      echo "--etcd-servers=http://127.0.0.1:$ETCD_CLIENT_PORT"
      ;;
    kube-controller-manager)
      echo "--secure-port=$KCM_PORT"
      ;;
  esac
}

# Exits when a running component was started with other port settings than
# the current ones. Starting the missing components with the current settings
# could otherwise connect a new kube-apiserver to the etcd of another control
# plane, because etcd here accepts any client on 127.0.0.1. The components
# named in the arguments are not checked, because `restart` stops them.
check_running_ports() {
  local skipped=" $* " name pid arguments flag
  local fix="Run the command again with the settings that started it, or run 'e2e/control-plane.sh down' to reset the control plane in $STATE_DIR."
  for name in "${COMPONENTS[@]}"; do
    [[ $skipped != *" $name "* ]] || continue
    pid=$(running_pid "$name") || continue
    arguments=$(tr '\0' '\n' 2>/dev/null <"/proc/$pid/cmdline") || continue
    while IFS= read -r flag; do
      if ! grep -qxF -- "$flag" <<<"$arguments"; then
        die "$name (pid $pid) runs without the flag $flag, so it was started with other MEDIANEST_E2E_*_PORT settings. $fix"
      fi
    done < <(port_flags "$name")
  done
  # kube-controller-manager reads the apiserver URL from its kubeconfig once
  # at start, and only start_stopped_components rewrites that file, after this
  # check. So the file shows the URL that a running kube-controller-manager uses.
  [[ $skipped != *" kube-controller-manager "* ]] || return 0
  local server="    server: https://127.0.0.1:$APISERVER_PORT"
  if pid=$(running_pid kube-controller-manager) && ! grep -qxF -- "$server" "$KCM_KUBECONFIG" 2>/dev/null; then
    die "kube-controller-manager (pid $pid) uses another kube-apiserver port than MEDIANEST_E2E_APISERVER_PORT=$APISERVER_PORT, see $KCM_KUBECONFIG. $fix"
  fi
}

# Prints the ports on 127.0.0.1 that component $1 listens on.
component_ports() {
  case $1 in
    etcd) echo "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" ;;
    kube-apiserver) echo "$APISERVER_PORT" ;;
    kube-controller-manager) ((KCM_PORT == 0)) || echo "$KCM_PORT" ;;
  esac
}

# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Sends an authenticated GET for path $1 to the apiserver as the admin user.
api_get() {
  curl --silent --fail --max-time 2 --output /dev/null \
    --cacert "$PKI_DIR/ca.crt" --cert "$PKI_DIR/admin.crt" --key "$PKI_DIR/admin.key" \
    "https://127.0.0.1:$APISERVER_PORT$1"
}

apiserver_ready() {
  [[ -f $PKI_DIR/.complete ]] && api_get /readyz
}

all_running() {
  local name
  for name in "${COMPONENTS[@]}"; do
    running_pid "$name" >/dev/null || return 1
  done
}

is_up() {
  all_running && apiserver_ready
}

print_env() {
  printf 'export KUBECONFIG=%q\n' "$ADMIN_KUBECONFIG"
}

# Stops the components that this invocation started (STARTED_COMPONENTS)
# after a failed start and exits. Components that were running before keep
# running, and the state directory stays so that the logs can be read.
fail_start() {
  log "error: $*"
  local index
  for ((index = ${#STARTED_COMPONENTS[@]} - 1; index >= 0; index--)); do
    stop_component "${STARTED_COMPONENTS[index]}"
  done
  die "start failed. The logs are in $LOG_DIR. Run 'e2e/control-plane.sh up' to try again, or 'e2e/control-plane.sh down' to delete $STATE_DIR."
}

# Polls command "$2..." every 0.2s until it succeeds, with $1 describing the
# wait in messages. Fails the start when the deadline passes or a started
# component exits.
wait_for() {
  local description=$1 name
  shift
  until "$@"; do
    for name in "${COMPONENTS[@]}"; do
      if [[ -f $PID_DIR/$name.pid ]] && ! running_pid "$name" >/dev/null; then
        log "last lines of $LOG_DIR/$name.log:"
        tail -n 20 "$LOG_DIR/$name.log" >&2 || true
        fail_start "$name exited while waiting for $description"
      fi
    done
    if ((SECONDS >= START_DEADLINE)); then
      fail_start "timed out after ${START_TIMEOUT}s waiting for $description"
    fi
    sleep 0.2
  done
}

etcd_healthy() {
  curl --silent --fail --max-time 2 --output /dev/null "http://127.0.0.1:$ETCD_CLIENT_PORT/health"
}

start_etcd() {
  start_component etcd "$BIN_DIR/etcd" \
    --name="$CLUSTER_NAME" \
    --data-dir="$STATE_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="$CLUSTER_NAME=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync=true \
    --heartbeat-interval=10 \
    --election-timeout=100
}

start_apiserver() {
  # --endpoint-reconciler-type=none: Endpoints and EndpointSlices may not
  # contain loopback addresses, and kube-apiserver v1.37.2 exits at start with
  # "cannot use public IP 127.0.0.1 with endpoint reconciler" unless the
  # reconciler is off. So the `kubernetes` Service has no endpoints.
  #
  # --shutdown-watch-termination-grace-period=2s: after SIGTERM, kube-apiserver
  # v1.37.2 stops listening and waits for busy connections for up to
  # --request-timeout (60s). An open watch keeps its connection busy, so with
  # kube-controller-manager or `kubectl get -w` connected, it exited only
  # after 60 seconds. A grace period above 0 makes it end the open watches at
  # SIGTERM and wait at most that long for them to close. It then exited about
  # 1.1 seconds after SIGTERM on a 2-core VM, and informers watch again once
  # it is back. --shutdown-delay-duration, which keeps serving after SIGTERM
  # so that a load balancer can notice, already defaults to 0.
  # NOTE: a slow request other than a watch can still delay the exit for up
  # to --request-timeout.
  start_component kube-apiserver "$BIN_DIR/kube-apiserver" \
    --advertise-address=127.0.0.1 \
    --bind-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$STATE_DIR/apiserver" \
    --tls-cert-file="$PKI_DIR/apiserver.crt" \
    --tls-private-key-file="$PKI_DIR/apiserver.key" \
    --client-ca-file="$PKI_DIR/ca.crt" \
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI_DIR/sa.pub" \
    --service-account-signing-key-file="$PKI_DIR/sa.key" \
    --service-cluster-ip-range="$SERVICE_CLUSTER_IP_RANGE" \
    --authorization-mode=Node,RBAC \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --shutdown-watch-termination-grace-period=2s
}

# Starts kube-controller-manager.
#
# --controllers='*' runs the controllers that kube-controller-manager enables
# by default. The ones that act on nodes or volumes stay idle because the
# cluster has no nodes.
#
# --use-service-account-credentials=false: every controller uses the
# controller manager's own identity. That identity is in system:masters,
# because the bootstrap RBAC role for system:kube-controller-manager lets it
# list and watch everything and request service account tokens, but not write
# the objects that controllers manage. With one service account per controller,
# as kubeadm configures it, the controllers started about 5 seconds later on a
# 2-core VM, because each one first creates its ServiceAccount in kube-system
# and requests a token. The controllers act the same either way, but
# kube-system has no per-controller ServiceAccounts.
#
# --flex-volume-plugin-dir: the FlexVolume prober creates this directory and
# recreates it when it is deleted. The default is
# /usr/libexec/kubernetes/kubelet-plugins/volume/exec/.
start_controller_manager() {
  local serving_flags=(--secure-port="$KCM_PORT")
  if ((KCM_PORT > 0)); then
    serving_flags+=(
      --bind-address=127.0.0.1
      --authentication-kubeconfig="$KCM_KUBECONFIG"
      --authorization-kubeconfig="$KCM_KUBECONFIG"
    )
  fi

  start_component kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig="$KCM_KUBECONFIG" \
    "${serving_flags[@]}" \
    --flex-volume-plugin-dir="$STATE_DIR/flexvolume" \
    --leader-elect=false \
    --controllers='*' \
    --use-service-account-credentials=false \
    --service-account-private-key-file="$PKI_DIR/sa.key" \
    --root-ca-file="$PKI_DIR/ca.crt" \
    --cluster-signing-cert-file="$PKI_DIR/ca.crt" \
    --cluster-signing-key-file="$PKI_DIR/ca.key" \
    --cluster-name="$CLUSTER_NAME" \
    --service-cluster-ip-range="$SERVICE_CLUSTER_IP_RANGE"
}

# --- subcommands ------------------------------------------------------------

# Starts every component that is not running, in the order of COMPONENTS and
# with the state in STATE_DIR, then waits until the control plane is ready and
# prints the export line. Each component starts only after the one it depends
# on is ready, whether that one was started now or was running already.
start_stopped_components() {
  check_running_ports

  local name port stopped=()
  for name in "${COMPONENTS[@]}"; do
    running_pid "$name" >/dev/null || stopped+=("$name")
  done
  for name in "${stopped[@]}"; do
    for port in $(component_ports "$name"); do
      if port_in_use "$port"; then
        die "port $port on 127.0.0.1, which $name needs, is already in use. Stop the process that listens on it or choose other ports with the MEDIANEST_E2E_*_PORT variables."
      fi
    done
  done

  build_binaries

  START_TIME=$SECONDS
  START_DEADLINE=$((SECONDS + START_TIMEOUT))
  mkdir -p "$STATE_DIR"
  touch "$STATE_MARKER"
  mkdir -p "$LOG_DIR" "$PID_DIR" "$STATE_DIR/apiserver"
  # A PID file of a component that exited without `down` would make wait_for
  # report it as crashed.
  for name in "${stopped[@]}"; do
    rm -f "$PID_DIR/$name.pid"
  done
  generate_pki
  write_kubeconfig "$ADMIN_KUBECONFIG" "$CLUSTER_NAME-admin" admin
  write_kubeconfig "$KCM_KUBECONFIG" system:kube-controller-manager controller-manager

  running_pid etcd >/dev/null || start_etcd
  wait_for "etcd /health" etcd_healthy
  running_pid kube-apiserver >/dev/null || start_apiserver
  wait_for "kube-apiserver /readyz" api_get /readyz
  # kube-controller-manager v1.37.2 exits when the apiserver /healthz is not
  # ok within 10 seconds of its start, so it starts only after /readyz is ok.
  running_pid kube-controller-manager >/dev/null || start_controller_manager
  # The serviceaccount controller creates this ServiceAccount, and pods cannot
  # be created in a namespace before its `default` ServiceAccount exists.
  wait_for "the ServiceAccount default/default" api_get /api/v1/namespaces/default/serviceaccounts/default

  if ((${#STARTED_COMPONENTS[@]} == 0)); then
    log "ready after $((SECONDS - START_TIME))s without starting a component; kubectl is $BIN_DIR/kubectl"
  else
    log "started ${STARTED_COMPONENTS[*]}; ready after $((SECONDS - START_TIME))s; kubectl is $BIN_DIR/kubectl"
  fi
  print_env
}

cmd_up() {
  acquire_lock
  if is_up; then
    log "already running"
    print_env
    return 0
  fi
  start_stopped_components
}

# Stops the named components, or all when none is named, in the reverse order
# of COMPONENTS and starts them again with the same state.
cmd_restart() {
  local names=("$@") name
  ((${#names[@]} > 0)) || names=("${COMPONENTS[@]}")
  for name in "${names[@]}"; do
    case $name in
      etcd | kube-apiserver | kube-controller-manager) ;;
      *)
        log "error: unknown component '$name'. Use etcd, kube-apiserver or kube-controller-manager, or no name to restart all three."
        exit 2
        ;;
    esac
  done

  acquire_lock
  if [[ ! -f $STATE_MARKER || ! -f $PKI_DIR/.complete ]]; then
    die "$STATE_DIR contains no control plane to restart. Run 'e2e/control-plane.sh up' first."
  fi
  # Both steps run before anything stops, so that a failed check does not
  # leave the components stopped and a rebuild does not keep them stopped.
  check_running_ports "${names[@]}"
  build_binaries

  local index
  for ((index = ${#COMPONENTS[@]} - 1; index >= 0; index--)); do
    for name in "${names[@]}"; do
      if [[ $name == "${COMPONENTS[index]}" ]]; then
        running_pid "$name" >/dev/null || log "$name is not running; starting it"
        stop_component "$name"
      fi
    done
  done
  start_stopped_components
}

cmd_down() {
  acquire_lock
  stop_all
  if [[ ! -e $STATE_DIR ]]; then
    log "nothing to remove: $STATE_DIR does not exist"
    return 0
  fi
  [[ -f $STATE_MARKER ]] || die "not deleting $STATE_DIR because it does not contain $(basename "$STATE_MARKER"), which 'up' creates. Delete it by hand if it is no longer needed."
  rm -rf "$STATE_DIR"
  log "removed $STATE_DIR"
}

cmd_status() {
  local name pid healthy=0
  for name in "${COMPONENTS[@]}"; do
    if pid=$(running_pid "$name"); then
      printf '%s: running (pid %s)\n' "$name" "$pid"
    else
      printf '%s: stopped\n' "$name"
      healthy=1
    fi
  done
  if apiserver_ready; then
    printf 'readyz: ok (https://127.0.0.1:%s)\n' "$APISERVER_PORT"
  else
    printf 'readyz: failed (https://127.0.0.1:%s)\n' "$APISERVER_PORT"
    healthy=1
  fi
  return "$healthy"
}

cmd_env() {
  is_up || die "the control plane is not ready. Run 'e2e/control-plane.sh up' first."
  print_env
}

cmd_build() {
  acquire_lock
  build_binaries
  log "binaries are in $BIN_DIR"
}

usage() {
  echo "usage: $0 up|down|status|env|build|restart [etcd|kube-apiserver|kube-controller-manager]" >&2
  exit 2
}

main() {
  validate_settings
  case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    build) cmd_build ;;
    restart)
      (($# <= 2)) || usage
      cmd_restart "${@:2}"
      ;;
    *) usage ;;
  esac
}

main "$@"
