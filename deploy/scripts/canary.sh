#!/usr/bin/env bash
# Canary release of KNHK, analysed the way Argo Rollouts does it:
#   1 migrate (cronjob/knhk-migrate with the new image), deploy the image to the idle colour, smoke-test it
#   2 point ingress/knhk-canary at the idle colour's Service and move its canary-weight through the stages
#     (default 1 10 50 100 %); after each stage's wait, an analysis queries Prometheus' HTTP API
#     (/api/v1/query) for the canary colour's error ratio and p95 latency from the scraped series
#     knhk_requests_total and knhk_request_duration_seconds_bucket (job="knhk", its namespace and track,
#     health probes and /metrics excluded):
#       successful   both within limits: next stage
#       failed       a limit exceeded: roll back (weight 0; service/knhk never left the old colour), exit 1
#       inconclusive no data (no requests yet, NaN, Prometheus unreachable): pause and measure again, up to
#                    --max-inconclusive times, then roll back
#   3 after the 100 % stage passes: promote (switch service/knhk to the canary colour, weight back to 0)
# Every step is recorded with `knhk audit append` (actions deploy.canary.*).
#
# usage: canary.sh --image IMAGE --prometheus URL [--namespace NS] [--stages "1 10 50 100"] [--stage-wait S] [--window 5m] [--max-error-rate R] [--max-p95 SECONDS] [--max-inconclusive N] [--smoke-url TEMPLATE] [--timeout S] [--skip-migration]
#   Defaults: stage wait 300 s, window 5m, error ratio 0.01, p95 0.1 s (the warm-path SLO), 3 inconclusive
#   analyses per stage. Exit 0 promoted, 1 rolled back or failed, 2 bad usage.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  sed -n 's/^# usage: /usage: /p' "$0" >&2
  exit 2
}

IMAGE=""
PROMETHEUS=""
STAGES="1 10 50 100"
STAGE_WAIT_S=300
WINDOW=5m
MAX_ERROR_RATE=0.01
MAX_P95=0.1
MAX_INCONCLUSIVE=3
SMOKE_URL=""
TIMEOUT_S=600
MIGRATE=1
number='^[0-9]+([.][0-9]+)?$'
while (($#)); do
  case "$1" in
    --image) [[ $# -ge 2 ]] || usage; IMAGE="$2"; shift 2 ;;
    --prometheus) [[ $# -ge 2 ]] || usage; PROMETHEUS="${2%/}"; shift 2 ;;
    --namespace | -n) [[ $# -ge 2 ]] || usage; NAMESPACE="$2"; shift 2 ;;
    --stages) [[ $# -ge 2 && "$2" =~ ^[0-9]+( [0-9]+)*$ ]] || usage; STAGES="$2"; shift 2 ;;
    --stage-wait) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; STAGE_WAIT_S="$2"; shift 2 ;;
    --window) [[ $# -ge 2 && "$2" =~ ^[0-9]+[smh]$ ]] || usage; WINDOW="$2"; shift 2 ;;
    --max-error-rate) [[ $# -ge 2 && "$2" =~ $number ]] || usage; MAX_ERROR_RATE="$2"; shift 2 ;;
    --max-p95) [[ $# -ge 2 && "$2" =~ $number ]] || usage; MAX_P95="$2"; shift 2 ;;
    --max-inconclusive) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; MAX_INCONCLUSIVE="$2"; shift 2 ;;
    --smoke-url) [[ $# -ge 2 ]] || usage; SMOKE_URL="$2"; shift 2 ;;
    --timeout) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; TIMEOUT_S="$2"; shift 2 ;;
    --skip-migration) MIGRATE=0; shift ;;
    *) usage ;;
  esac
done
[[ "$IMAGE" =~ ^[^[:space:]]+:[^[:space:]]+$ && "$IMAGE" != *:latest ]] \
  || { log "--image must be a pinned image reference (name:tag, not :latest)"; usage; }
[[ "$PROMETHEUS" =~ ^https?:// ]] || { log "--prometheus URL is required"; usage; }
read -r -a STAGE_LIST <<<"$STAGES"
for w in "${STAGE_LIST[@]}"; do ((w >= 1 && w <= 100)) || { log "stage weight $w is not 1..100"; usage; }; done
[[ "${STAGE_LIST[-1]}" == 100 ]] || { log "the last stage must be 100"; usage; }

LIVE="$(live_colour)"
CANARY="$(other_colour "$LIVE")"
RESOURCE="namespace/$NAMESPACE/ingress/knhk-canary"
meta() { json_object image "$IMAGE" stable "$LIVE" canary "$CANARY" "$@"; }

set_weight() {
  kube annotate ingress knhk-canary --overwrite "nginx.ingress.kubernetes.io/canary-weight=$1" >/dev/null
}

abort() {  # abort STEP REASON: the canary gets no more traffic; service/knhk stays on the stable colour
  log "$1: $2; rolling back to $LIVE"
  set_weight 0 || log "WARNING: could not set ingress/knhk-canary's weight to 0"
  switch_service "$LIVE" || log "WARNING: could not confirm that service/knhk selects $LIVE"
  audit deploy.canary.rolled_back "$RESOURCE" failure "$1: $2" "$(meta step "$1")"
  exit 1
}

log "canary of $IMAGE: stable $LIVE, canary $CANARY, stages $STAGES % in namespace $NAMESPACE"
audit deploy.canary.started "$RESOURCE" success "" "$(meta stages "$STAGES")"

if ((MIGRATE)); then
  migrate "$IMAGE" "$TIMEOUT_S" || abort migrate "the migration Job did not complete"
fi
rollout "$IMAGE" "$CANARY" "$TIMEOUT_S" || abort rollout "deployment/knhk-$CANARY did not roll out"
smoke "$CANARY" "$SMOKE_URL" || abort smoke "the smoke test of $CANARY failed"
kube patch ingress knhk-canary --type=json \
  -p "[{\"op\":\"replace\",\"path\":\"/spec/rules/0/http/paths/0/backend/service/name\",\"value\":\"knhk-$CANARY\"}]" \
  >/dev/null || abort route "ingress/knhk-canary could not be pointed at knhk-$CANARY"

for weight in "${STAGE_LIST[@]}"; do
  set_weight "$weight" || abort "stage $weight" "ingress/knhk-canary's weight could not be set"
  audit deploy.canary.stage "$RESOURCE" success "" "$(meta weight "$weight")"
  log "stage $weight %: waiting ${STAGE_WAIT_S}s before the analysis"
  sleep "$STAGE_WAIT_S"
  inconclusive=0
  while :; do
    read -r verdict err p95 <<<"$(analyse "$CANARY")"
    log "stage $weight %: analysis $verdict (error ratio $err, p95 ${p95}s)"
    case "$verdict" in
      successful)
        audit deploy.canary.analysis "$RESOURCE" success "" "$(meta weight "$weight" error_ratio "$err" p95_s "$p95")"
        break ;;
      failed)
        abort "stage $weight" "analysis failed (error ratio $err > $MAX_ERROR_RATE or p95 ${p95}s > ${MAX_P95}s)" ;;
      *)
        inconclusive=$((inconclusive + 1))
        if ((inconclusive > MAX_INCONCLUSIVE)); then
          abort "stage $weight" "analysis inconclusive $inconclusive times (no data)"
        fi
        audit deploy.canary.paused "$RESOURCE" success "analysis inconclusive (no data)" \
          "$(meta weight "$weight" inconclusive "$inconclusive")"
        log "stage $weight %: paused ($inconclusive/$MAX_INCONCLUSIVE), measuring again in ${STAGE_WAIT_S}s"
        sleep "$STAGE_WAIT_S" ;;
    esac
  done
done

switch_service "$CANARY" || abort promote "service/knhk could not be switched to $CANARY"
set_weight 0 || log "WARNING: service/knhk selects $CANARY but ingress/knhk-canary's weight is not 0"
log "promoted: service/knhk selects $CANARY ($IMAGE); $LIVE keeps its pods for rollback.sh"
audit deploy.canary.completed "namespace/$NAMESPACE/service/knhk" success "" "$(meta)"
