#!/usr/bin/env bash
# Blue-green release of KNHK (deploy/kubernetes: Deployments knhk-blue and knhk-green, the Service knhk
# selecting the live one by `track`):
#   1 migrate: cronjob/knhk-migrate set to the new image, a Job created from it, waited for
#   2 deploy the new image to the idle colour and wait for its rollout
#   3 smoke-test the idle colour through its own Service (smoke-test.sh)
#   4 switch the Service knhk's selector to the idle colour and check it took
#   5 with --prometheus: watch the new colour for --watch seconds (default 300), then analyse its error ratio
#     and p95 as canary.sh does; failed (or still no data after --max-inconclusive more watches) switches
#     the Service back to the old colour and exits 1
# The old colour keeps running its image, so rollback.sh switches back at once. A failure at any step
# stops there with the live colour untouched. Every step is recorded with `knhk audit append` (actions
# deploy.blue_green.*).
#
# usage: blue-green-deploy.sh --image IMAGE [--namespace NS] [--smoke-url TEMPLATE] [--timeout S] [--skip-migration] [--prometheus URL] [--watch S] [--window 5m] [--max-error-rate R] [--max-p95 SECONDS] [--max-inconclusive N]
#   --smoke-url  URL of the colour's Service with {colour}, e.g. http://knhk-{colour}.knhk.svc:8080 (inside the
#                cluster); default: `kubectl port-forward service/knhk-<colour>` from this machine
#   Smoke test token: KNHK_SMOKE_TOKEN (see smoke-test.sh). Exit 0 released, 1 failed, 2 bad usage.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  sed -n 's/^# usage: /usage: /p' "$0" >&2
  exit 2
}

IMAGE=""
SMOKE_URL=""
TIMEOUT_S=600
MIGRATE=1
PROMETHEUS=""
WATCH_S=300
WINDOW=5m
MAX_ERROR_RATE=0.01
MAX_P95=0.1
MAX_INCONCLUSIVE=3
number='^[0-9]+([.][0-9]+)?$'
while (($#)); do
  case "$1" in
    --image) [[ $# -ge 2 ]] || usage; IMAGE="$2"; shift 2 ;;
    --namespace | -n) [[ $# -ge 2 ]] || usage; NAMESPACE="$2"; shift 2 ;;
    --smoke-url) [[ $# -ge 2 ]] || usage; SMOKE_URL="$2"; shift 2 ;;
    --timeout) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; TIMEOUT_S="$2"; shift 2 ;;
    --skip-migration) MIGRATE=0; shift ;;
    --prometheus) [[ $# -ge 2 && "$2" =~ ^https?:// ]] || usage; PROMETHEUS="${2%/}"; shift 2 ;;
    --watch) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; WATCH_S="$2"; shift 2 ;;
    --window) [[ $# -ge 2 && "$2" =~ ^[0-9]+[smh]$ ]] || usage; WINDOW="$2"; shift 2 ;;
    --max-error-rate) [[ $# -ge 2 && "$2" =~ $number ]] || usage; MAX_ERROR_RATE="$2"; shift 2 ;;
    --max-p95) [[ $# -ge 2 && "$2" =~ $number ]] || usage; MAX_P95="$2"; shift 2 ;;
    --max-inconclusive) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; MAX_INCONCLUSIVE="$2"; shift 2 ;;
    *) usage ;;
  esac
done
[[ "$IMAGE" =~ ^[^[:space:]]+:[^[:space:]]+$ && "$IMAGE" != *:latest ]] \
  || { log "--image must be a pinned image reference (name:tag, not :latest)"; usage; }

LIVE="$(live_colour)"
IDLE="$(other_colour "$LIVE")"
RESOURCE="namespace/$NAMESPACE/service/knhk"
meta() { json_object image "$IMAGE" from "$LIVE" to "$IDLE" "$@"; }

fail() {  # fail STEP REASON
  log "$1 failed: $2; service/knhk still selects $LIVE"
  audit deploy.blue_green.failed "$RESOURCE" failure "$1: $2" "$(meta step "$1")"
  exit 1
}

log "releasing $IMAGE: live $LIVE, deploying to $IDLE in namespace $NAMESPACE"
audit deploy.blue_green.started "$RESOURCE" success "" "$(meta)"

if ((MIGRATE)); then
  migrate "$IMAGE" "$TIMEOUT_S" || fail migrate "the migration Job did not complete"
  audit deploy.blue_green.migrated "$RESOURCE" success "" "$(meta)"
fi

rollout "$IMAGE" "$IDLE" "$TIMEOUT_S" || fail rollout "deployment/knhk-$IDLE did not roll out"
audit deploy.blue_green.rolled_out "deployment/knhk-$IDLE" success "" "$(meta)"

smoke "$IDLE" "$SMOKE_URL" || fail smoke "the smoke test of $IDLE failed"

if ! switch_service "$IDLE"; then
  switch_service "$LIVE" || log "WARNING: service/knhk could not be set back to $LIVE either"
  fail switch "service/knhk could not be switched to $IDLE"
fi
log "service/knhk now selects $IDLE ($IMAGE)"

if [[ -n "$PROMETHEUS" ]]; then
  inconclusive=0
  while :; do
    log "watching $IDLE for ${WATCH_S}s"
    sleep "$WATCH_S"
    read -r verdict err p95 <<<"$(analyse "$IDLE")"
    log "analysis of $IDLE: $verdict (error ratio $err, p95 ${p95}s)"
    [[ "$verdict" == successful ]] && break
    if [[ "$verdict" == inconclusive ]]; then
      inconclusive=$((inconclusive + 1))
      ((inconclusive > MAX_INCONCLUSIVE)) || continue
    fi
    reason="analysis $verdict (error ratio $err, p95 ${p95}s)"
    if switch_service "$LIVE"; then
      log "$reason; service/knhk switched back to $LIVE"
      audit deploy.blue_green.rolled_back "$RESOURCE" failure "watch: $reason" "$(meta step watch)"
    else
      log "$reason; WARNING: service/knhk could not be switched back to $LIVE (run rollback.sh)"
      audit deploy.blue_green.failed "$RESOURCE" failure "watch: $reason; switch back failed" "$(meta step watch)"
    fi
    exit 1
  done
  audit deploy.blue_green.analysis "$RESOURCE" success "" "$(meta error_ratio "$err" p95_s "$p95")"
fi
log "$LIVE keeps its pods for rollback.sh"
audit deploy.blue_green.completed "$RESOURCE" success "" "$(meta)"
