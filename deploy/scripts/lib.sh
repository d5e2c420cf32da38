# shellcheck shell=bash
# Shared by deploy/scripts/*.sh (sourced, never run): logging, the audit trail (`knhk audit append`; an
# action that cannot be audited is not done), kubectl in one namespace, and waiting for a migration Job.
#
# Environment:
#   KNHK_NAMESPACE     namespace of the deployment (default knhk; --namespace overrides)
#   KNHK_DEPLOY_ACTOR  who acts, recorded in the audit log (default $USER)
#   KNHK_AUDIT_CMD     the audit command (default "knhk audit append"), e.g.
#                      "kubectl -n knhk exec deploy/knhk-blue -- knhk audit append" when the operator's
#                      workstation cannot reach the database
#   KNHK_POLL_S        seconds between status polls (default 5)
#   KUBECTL            the kubectl binary (default kubectl)

NAMESPACE="${KNHK_NAMESPACE:-knhk}"
ACTOR="${KNHK_DEPLOY_ACTOR:-${USER:-unknown}}"
POLL_S="${KNHK_POLL_S:-5}"
KUBECTL="${KUBECTL:-kubectl}"
SCRIPT_NAME="$(basename "$0" .sh)"

log() { printf '%s %s: %s\n' "$(date -u +%H:%M:%S)" "$SCRIPT_NAME" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

kube() { "$KUBECTL" -n "$NAMESPACE" "$@"; }

# json_object KEY VALUE [KEY VALUE ...] -> a JSON object of string values (jq does the quoting).
json_object() {
  local args=() key
  while (($#)); do
    key="$1"; args+=(--arg "$key" "$2"); shift 2
  done
  jq -cn "${args[@]}" '$ARGS.named'
}

# audit ACTION RESOURCE OUTCOME REASON METADATA_JSON: one audit entry; exits the script if it cannot be recorded.
audit() {
  local cmd
  read -r -a cmd <<<"${KNHK_AUDIT_CMD:-knhk audit append}"
  cmd+=(--actor "$ACTOR" --action "$1" --resource "$2" --outcome "$3" --metadata "$5")
  [[ -z "$4" ]] || cmd+=(--reason "$4")
  if ! "${cmd[@]}" >/dev/null; then
    die "could not record the audit entry $1 for $2 (nothing further is done without an audit trail)"
  fi
}

# live_colour: the `track` the Service knhk selects (blue or green).
live_colour() {
  local track
  track="$(kube get service knhk -o 'jsonpath={.spec.selector.track}')" || die "cannot read service/knhk"
  case "$track" in
    blue | green) printf '%s' "$track" ;;
    *) die "service/knhk selects track '$track', expected blue or green" ;;
  esac
}

other_colour() { if [[ "$1" == blue ]]; then printf green; else printf blue; fi; }

# switch_service COLOUR: point the Service knhk at COLOUR and check that it took.
switch_service() {
  kube patch service knhk --type=merge -p "{\"spec\":{\"selector\":{\"track\":\"$1\"}}}" >/dev/null \
    || return 1
  [[ "$(live_colour)" == "$1" ]]
}

# ready_replicas COLOUR: how many pods of that colour pass their readiness probe.
ready_replicas() {
  local n
  n="$(kube get deployment "knhk-$1" -o 'jsonpath={.status.readyReplicas}')" || return 1
  printf '%s' "${n:-0}"
}

# migrate IMAGE TIMEOUT_S: run the release's schema migration (cronjob/knhk-migrate with IMAGE) and wait.
migrate() {
  local image="$1" timeout_s="$2" job waited=0 status
  job="knhk-migrate-$(date -u +%Y%m%d%H%M%S)"
  kube set image cronjob/knhk-migrate "knhk=$image" >/dev/null || return 1
  kube create job "$job" --from=cronjob/knhk-migrate >/dev/null || return 1
  log "migration job/$job started"
  while :; do
    status="$(kube get job "$job" -o 'jsonpath={.status.succeeded}/{.status.failed}')" || return 1
    [[ "${status%%/*}" =~ ^[1-9] ]] && { log "migration job/$job complete"; return 0; }
    [[ "${status##*/}" =~ ^[1-9] ]] && { log "migration job/$job failed (kubectl -n $NAMESPACE logs job/$job)"; return 1; }
    ((waited >= timeout_s)) && { log "migration job/$job did not finish in ${timeout_s}s"; return 1; }
    sleep "$POLL_S"
    waited=$((waited + POLL_S))
  done
}

# rollout IMAGE COLOUR TIMEOUT_S: deploy IMAGE to the COLOUR Deployment and wait for its rollout.
rollout() {
  kube set image "deployment/knhk-$2" "knhk=$1" >/dev/null || return 1
  kube rollout status "deployment/knhk-$2" "--timeout=${3}s" >&2
}

# smoke COLOUR URL_TEMPLATE: smoke-test.sh against the COLOUR's own Service. URL_TEMPLATE with {colour}
# (e.g. http://knhk-{colour}.knhk.svc:8080, from inside the cluster); empty: through `kubectl port-forward`.
smoke() {
  local colour="$1" template="$2" url pf_pid="" pf_log port tries=0 rc=0
  if [[ -n "$template" ]]; then
    url="${template//\{colour\}/$colour}"
  else
    pf_log="$(mktemp)"
    # kubectl itself in the background (not the kube function, whose subshell would be the one killed)
    "$KUBECTL" -n "$NAMESPACE" port-forward "service/knhk-$colour" :8080 >"$pf_log" 2>&1 &
    pf_pid=$!
    until port="$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$pf_log" | head -n 1)" \
        && [[ -n "$port" ]]; do
      tries=$((tries + 1))
      if ((tries > 100)) || ! kill -0 "$pf_pid" 2>/dev/null; then
        log "kubectl port-forward to service/knhk-$colour failed: $(cat "$pf_log")"
        kill "$pf_pid" 2>/dev/null || true
        rm -f "$pf_log"
        return 1
      fi
      sleep 0.1
    done
    url="http://127.0.0.1:$port"
  fi
  log "smoke test of $colour at $url"
  "$(dirname "${BASH_SOURCE[0]}")/smoke-test.sh" "$url" || rc=$?
  if [[ -n "$pf_pid" ]]; then
    kill "$pf_pid" 2>/dev/null || true
    wait "$pf_pid" 2>/dev/null || true
    rm -f "$pf_log"
  fi
  return "$rc"
}

# --- analysis (canary.sh, blue-green-deploy.sh --prometheus): the colour's error ratio and p95 latency from
# Prometheus' HTTP API, over the series the ServiceMonitor scrapes (job="knhk", namespace, track; health
# probes and /metrics excluded). Set PROMETHEUS, WINDOW, MAX_ERROR_RATE and MAX_P95 before calling.

# analysis_queries COLOUR: sets ERROR_QUERY and P95_QUERY for that colour.
analysis_queries() {
  local selector="job=\"knhk\",namespace=\"$NAMESPACE\",track=\"$1\",route!~\"/health.*|/metrics\""
  ERROR_QUERY="(sum(rate(knhk_requests_total{$selector,status=~\"5..\"}[$WINDOW])) or vector(0)) / sum(rate(knhk_requests_total{$selector}[$WINDOW]))"
  P95_QUERY="histogram_quantile(0.95, sum by (le) (rate(knhk_request_duration_seconds_bucket{$selector}[$WINDOW])))"
}

# query PROMQL: the first sample's value, or "none" (no series, NaN, or Prometheus did not answer).
query() {
  local body value
  body="$(curl -sS --fail --max-time 10 --get --data-urlencode "query=$1" "$PROMETHEUS/api/v1/query" 2>/dev/null)" \
    || { printf none; return 0; }
  value="$(jq -r 'if .status == "success" and (.data.result | length) > 0 then .data.result[0].value[1]
                  else "none" end' <<<"$body" 2>/dev/null)" || value=none
  [[ "$value" =~ ^[+-]?[0-9.eE+-]+$ || "$value" == +Inf ]] || value=none
  printf '%s' "$value"
}

above() { awk -v v="$1" -v max="$2" 'BEGIN { exit !(v == "+Inf" || v + 0 > max + 0) }'; }

# analyse COLOUR: prints "successful|failed|inconclusive ERROR_RATIO P95".
analyse() {
  local err p95
  analysis_queries "$1"
  err="$(query "$ERROR_QUERY")"
  p95="$(query "$P95_QUERY")"
  if [[ "$err" != none ]] && above "$err" "$MAX_ERROR_RATE"; then
    echo "failed $err $p95"
  elif [[ "$p95" != none ]] && above "$p95" "$MAX_P95"; then
    echo "failed $err $p95"
  elif [[ "$err" == none || "$p95" == none ]]; then
    echo "inconclusive $err $p95"
  else
    echo "successful $err $p95"
  fi
}
