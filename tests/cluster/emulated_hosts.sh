#!/usr/bin/env bash
# Emulated hosts on this machine, for running MPI jobs across "nodes". Run directly, it starts
# one job on them and tears them down after (as root):
#   tests/cluster/emulated_hosts.sh HOSTS RATE NP [mpiexec args] PROGRAM [ARGS...]
#   e.g. tests/cluster/emulated_hosts.sh 2 1gbit 4 build/examples/train_gpt/train_gpt --dp 2 --tp 2
# Sourced, it gives these functions:
#
#   emulated_hosts_up HOSTS [RATE]   HOSTS network namespaces, each its own host with its own
#                                    hostname (trident-host0, ...), joined through veth pairs to
#                                    a bridge; with RATE (e.g. 1gbit) each host's outgoing link
#                                    is limited by tc's token bucket filter. Torn down on exit.
#   emulated_mpiexec NP [mpiexec args] PROGRAM ...
#                                    mpiexec across the hosts (slots filled host by host unless
#                                    --map-by says otherwise): Open MPI starts its daemons with
#                                    an agent that enters a host's namespace, so ranks on one
#                                    host share memory and ranks on different hosts talk TCP.
#   emulated_hosts_down              what the exit trap runs.
#
# Exits 77 (a skip, for ctest) when the machine does not let us make namespaces: not root, or
# no iproute2.

EMULATED_SKIP=77

emulated_hosts_up() {
  local hosts="$1" rate="${2:-}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: emulated hosts need root (network namespaces); running as $(id -un)"
    exit "$EMULATED_SKIP"
  fi
  if ! command -v ip > /dev/null || ! command -v tc > /dev/null || ! command -v unshare > /dev/null; then
    echo "SKIP: emulated hosts need ip and tc (iproute2) and unshare (util-linux)"
    exit "$EMULATED_SKIP"
  fi
  # Names and a subnet of this run's own, so runs side by side (or left over) never collide.
  local id=$(( $$ % 100000 ))
  EMULATED_PREFIX="td${id}"
  EMULATED_BRIDGE="${EMULATED_PREFIX}br"
  EMULATED_SUBNET="10.250.$(( $$ % 250 ))"
  EMULATED_DIR="$(mktemp -d /tmp/trident-hosts.XXXXXX)"
  EMULATED_HOSTS="$hosts"
  trap emulated_hosts_down EXIT
  trap 'exit 130' INT TERM
  if ! ip netns add "${EMULATED_PREFIX}h0" 2> "$EMULATED_DIR/netns.err"; then
    echo "SKIP: this machine refuses network namespaces: $(cat "$EMULATED_DIR/netns.err")"
    exit "$EMULATED_SKIP"
  fi
  ip link add "$EMULATED_BRIDGE" type bridge
  ip addr add "$EMULATED_SUBNET.1/24" dev "$EMULATED_BRIDGE"
  ip link set "$EMULATED_BRIDGE" up
  local agent="$EMULATED_DIR/agent.sh"
  {
    echo '#!/bin/sh'
    echo '# Open MPI calls: agent HOST COMMAND...; run COMMAND on the emulated HOST.'
    echo 'host="$1"; shift'
    echo 'case "$host" in'
  } > "$agent"
  : > "$EMULATED_DIR/hostfile"
  local h ns
  for (( h = 0; h < hosts; h++ )); do
    ns="${EMULATED_PREFIX}h$h"
    [ "$h" -eq 0 ] || ip netns add "$ns"
    ip link add "${EMULATED_PREFIX}v$h" type veth peer name "${EMULATED_PREFIX}p$h"
    ip link set "${EMULATED_PREFIX}p$h" netns "$ns"
    ip link set "${EMULATED_PREFIX}v$h" master "$EMULATED_BRIDGE" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$EMULATED_SUBNET.$(( h + 2 ))/24" dev "${EMULATED_PREFIX}p$h"
    ip netns exec "$ns" ip link set "${EMULATED_PREFIX}p$h" up
    if [ -n "$rate" ]; then
      # The burst holds a few of the large segments veth passes on; latency bounds the queue.
      ip netns exec "$ns" tc qdisc add dev "${EMULATED_PREFIX}p$h" root tbf rate "$rate" burst 256kb latency 10ms
    fi
    echo "$EMULATED_SUBNET.$(( h + 2 )) slots=64" >> "$EMULATED_DIR/hostfile"
    echo "  $EMULATED_SUBNET.$(( h + 2 ))) exec ip netns exec $ns unshare --uts sh -c \"hostname trident-host$h; \$*\" ;;" >> "$agent"
  done
  {
    echo '  *) echo "no emulated host $host" >&2; exit 1 ;;'
    echo 'esac'
  } >> "$agent"
  chmod +x "$agent"
  echo "emulated hosts: $hosts on $EMULATED_SUBNET.0/24${rate:+, links limited to $rate}"
}

emulated_mpiexec() {
  local ranks="$1"; shift
  local slots=$(( (ranks + EMULATED_HOSTS - 1) / EMULATED_HOSTS ))
  sed -i -E "s/slots=[0-9]+/slots=$slots/" "$EMULATED_DIR/hostfile"
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    mpiexec -n "$ranks" --hostfile "$EMULATED_DIR/hostfile" --oversubscribe \
    --mca plm_rsh_agent "$EMULATED_DIR/agent.sh" --mca plm_rsh_no_tree_spawn 1 \
    --mca oob_tcp_if_include "$EMULATED_SUBNET.0/24" --mca btl_tcp_if_include "$EMULATED_SUBNET.0/24" \
    --mca btl self,vader,tcp --mca mpi_yield_when_idle 1 \
    -x OPENBLAS_NUM_THREADS=1 -x OMP_NUM_THREADS=1 "$@"
}

emulated_hosts_down() {
  local status=$?
  local h
  for (( h = 0; h < ${EMULATED_HOSTS:-0}; h++ )); do
    ip netns pids "${EMULATED_PREFIX}h$h" 2> /dev/null | xargs -r kill -9 2> /dev/null || true
    ip netns del "${EMULATED_PREFIX}h$h" 2> /dev/null || true  # takes its end of the veth pair along
  done
  ip link del "${EMULATED_BRIDGE:-none}" 2> /dev/null || true
  [ -n "${EMULATED_DIR:-}" ] && rm -rf "$EMULATED_DIR"
  return $status
}

# Run directly: HOSTS RATE NP JOB...
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  if [ $# -lt 4 ]; then
    sed -n 2,6p "$0"
    exit 2
  fi
  hosts="$1" rate="$2" ranks="$3"
  shift 3
  emulated_hosts_up "$hosts" "$rate"
  emulated_mpiexec "$ranks" "$@"
fi
