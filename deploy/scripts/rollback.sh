#!/usr/bin/env bash
# Emergency rollback of KNHK: point the Service knhk back at the other colour (the one the last
# blue-green-deploy.sh or canary.sh switched away from, still running its image) and take the canary
# Ingress's weight to 0. Refuses unless that colour has ready pods. Asks the operator to type ROLLBACK on
# standard input (anything else, or no input, aborts); --yes skips the question for automation.
# Every step is recorded with `knhk audit append` (actions deploy.rollback.*).
#
# usage: rollback.sh [--yes] [--namespace NS] [--to blue|green] [--reason TEXT]
#   Exit 0 rolled back, 1 refused or failed, 2 bad usage.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  sed -n 's/^# usage: /usage: /p' "$0" >&2
  exit 2
}

YES=0
TARGET=""
REASON="operator rollback"
while (($#)); do
  case "$1" in
    --yes | -y) YES=1; shift ;;
    --namespace | -n) [[ $# -ge 2 ]] || usage; NAMESPACE="$2"; shift 2 ;;
    --to) [[ $# -ge 2 && ("$2" == blue || "$2" == green) ]] || usage; TARGET="$2"; shift 2 ;;
    --reason) [[ $# -ge 2 ]] || usage; REASON="$2"; shift 2 ;;
    *) usage ;;
  esac
done

LIVE="$(live_colour)"
TARGET="${TARGET:-$(other_colour "$LIVE")}"
RESOURCE="namespace/$NAMESPACE/service/knhk"
meta() { json_object from "$LIVE" to "$TARGET" "$@"; }
[[ "$TARGET" != "$LIVE" ]] || die "service/knhk already selects $TARGET"

READY="$(ready_replicas "$TARGET")" || die "cannot read deployment/knhk-$TARGET"
if ! [[ "$READY" =~ ^[1-9][0-9]*$ ]]; then
  audit deploy.rollback.refused "$RESOURCE" failure "knhk-$TARGET has no ready pods" "$(meta)"
  die "deployment/knhk-$TARGET has no ready pods; not switching traffic to it"
fi

log "WARNING: this switches all traffic in $NAMESPACE from $LIVE to $TARGET ($READY ready pods)"
if ((!YES)); then
  printf 'Type ROLLBACK to continue: ' >&2
  answer=""
  read -r answer || true
  if [[ "$answer" != ROLLBACK ]]; then
    audit deploy.rollback.aborted "$RESOURCE" denied "confirmation not given" "$(meta)"
    die "not confirmed (typed '$answer'); nothing changed"
  fi
fi

audit deploy.rollback.started "$RESOURCE" success "$REASON" "$(meta confirmed "$( ((YES)) && echo --yes || echo typed)")"
if ! switch_service "$TARGET"; then
  audit deploy.rollback.failed "$RESOURCE" failure "service/knhk could not be switched" "$(meta)"
  die "service/knhk could not be switched to $TARGET"
fi
if ! kube annotate ingress knhk-canary --overwrite nginx.ingress.kubernetes.io/canary-weight=0 >/dev/null; then
  audit deploy.rollback.failed "$RESOURCE" failure "ingress/knhk-canary's weight could not be set to 0" "$(meta)"
  die "service/knhk selects $TARGET, but ingress/knhk-canary may still send traffic elsewhere"
fi
log "service/knhk now selects $TARGET"
audit deploy.rollback.completed "$RESOURCE" success "$REASON" "$(meta)"
