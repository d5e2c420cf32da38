#!/usr/bin/env bash
# The seed's eight post-deployment smoke tests against any KNHK base URL, mapped to KNHK's real routes:
#   1 health          GET /health/live is 200; GET /health is 200 with status healthy or degraded
#   2 database        GET /health/ready is 200 with every check true; /health's database dependency is up
#   3 redis           /health's redis dependency is up (not_configured passes unless --require-redis)
#   4 ingestion       POST /api/v1/observations answers 201 with an id; GET /api/v1/observations/{id} reads it back
#   5 patterns        POST /api/v1/patterns/detect answers 200 with a patterns list and no detector errors
#   6 metrics         GET /metrics exposes knhk_requests_total and knhk_build_info
#   7 telemetry+ledger  knhk_telemetry_check_ok is 1 (the registry self-check, the seed's "Weaver validation");
#                     the ledger is verified in /health; GET /api/v1/receipts/checkpoint and the newest entry's
#                     /proof bundle verify offline with `knhk receipts verify-bundle`
#   8 latency         GET /health/ready round trip under --max-latency-ms (default 500)
# Checks 4, 5 and 7 need a bearer token with the roles ingestor, analyst and observer (KNHK_SMOKE_TOKEN or
# --token-file); the observation it ingests is real and carries metadata smoke=true.
# Prints one line per check and a summary; exit 0 only when all eight pass, 1 otherwise, 2 on bad usage.
# The run is recorded with `knhk audit append` (action deploy.smoke_test).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<'EOF'
usage: smoke-test.sh [--token-file F] [--sector S] [--max-latency-ms N] [--require-redis] BASE_URL
EOF
  exit 2
}

TOKEN="${KNHK_SMOKE_TOKEN:-}"
SECTOR=finance
MAX_LATENCY_MS=500
REQUIRE_REDIS=0
BASE=""
while (($#)); do
  case "$1" in
    --token-file) [[ $# -ge 2 && -r "$2" ]] || usage; TOKEN="$(<"$2")"; shift 2 ;;
    --sector) [[ $# -ge 2 ]] || usage; SECTOR="$2"; shift 2 ;;
    --max-latency-ms) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || usage; MAX_LATENCY_MS="$2"; shift 2 ;;
    --require-redis) REQUIRE_REDIS=1; shift ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) [[ -z "$BASE" ]] || usage; BASE="${1%/}"; shift ;;
  esac
done
[[ "$BASE" =~ ^https?:// ]] || usage

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PASSED=()
FAILED=()

# get NAME METHOD PATH [BODY]: request into $WORK/NAME; prints the status code (000 when unreachable).
get() {
  local name="$1" method="$2" path="$3" body="${4:-}"
  local args=(-sS -o "$WORK/$name" -w '%{http_code}' --max-time 10 -X "$method")
  [[ -n "$TOKEN" && "$path" == /api/* ]] && args+=(-H "Authorization: Bearer $TOKEN")
  [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data "$body")
  curl "${args[@]}" "$BASE$path" 2>"$WORK/$name.err" || true
}

field() { jq -r "$2" "$WORK/$1" 2>/dev/null || true; }

result() {  # result NUMBER NAME OK DETAIL
  if [[ "$3" == 1 ]]; then
    PASSED+=("$1")
    printf 'PASS %s %-17s %s\n' "$1" "$2" "$4"
  else
    FAILED+=("$1 $2")
    printf 'FAIL %s %-17s %s\n' "$1" "$2" "$4"
  fi
}

need_token() { [[ -n "$TOKEN" ]] || { result "$1" "$2" 0 "no token (KNHK_SMOKE_TOKEN or --token-file)"; return 1; }; }

# 1 health
live="$(get live GET /health/live)"
health="$(get health GET /health)"
status="$(field health .status)"
if [[ "$live" == 200 && "$health" == 200 && ("$status" == healthy || "$status" == degraded) ]]; then
  result 1 health 1 "live 200, /health $status"
else
  result 1 health 0 "live $live, /health $health status '${status}'"
fi

# 2 database
ready="$(get ready GET /health/ready)"
db="$(field health .dependencies.database.status)"
notready="$(field ready '[.checks // {} | to_entries[] | select(.value != true) | .key] | join(",")')"
if [[ "$ready" == 200 && "$db" == up ]]; then
  result 2 database 1 "ready, database up ($(field health .dependencies.database.dialect))"
else
  result 2 database 0 "/health/ready $ready (failing: ${notready:-?}), database '${db}'"
fi

# 3 redis
redis="$(field health .dependencies.redis.status)"
if [[ "$redis" == up || ("$redis" == not_configured && "$REQUIRE_REDIS" == 0) ]]; then
  result 3 redis 1 "$redis"
else
  result 3 redis 0 "redis '${redis}'"
fi

# 4 ingestion
if need_token 4 ingestion; then
  body="$(jq -cn --arg sector "$SECTOR" --arg at "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    '{event_type: "payment.created", sector: $sector, metadata: {smoke: "true", at: $at},
      value: {account_id: "smoke-test", transaction_amount: 1, currency: "EUR"}}')"
  code="$(get ingest POST /api/v1/observations "$body")"
  id="$(field ingest '.observation.id // empty')"
  if [[ "$code" == 201 && -n "$id" ]]; then
    back="$(get readback GET "/api/v1/observations/$id")"
    if [[ "$back" == 200 && "$(field readback .id)" == "$id" ]]; then
      result 4 ingestion 1 "observation $id stored and read back"
    else
      result 4 ingestion 0 "observation $id: read back $back"
    fi
  else
    result 4 ingestion 0 "POST /api/v1/observations $code: $(head -c 200 "$WORK/ingest" 2>/dev/null || true)"
  fi
fi

# 5 patterns
if need_token 5 patterns; then
  code="$(get detect POST /api/v1/patterns/detect "{\"sector\":\"$SECTOR\"}")"
  kind="$(field detect '.patterns | type')"
  errors="$(field detect '.errors | length')"
  if [[ "$code" == 200 && "$kind" == array && "$errors" == 0 ]]; then
    result 5 patterns 1 "$(field detect '.patterns | length') patterns in $SECTOR"
  else
    result 5 patterns 0 "POST /api/v1/patterns/detect $code, patterns '$kind', errors '${errors}'"
  fi
fi

# 6 metrics
metrics="$(get metrics GET /metrics)"
if [[ "$metrics" == 200 ]] && grep -q '^knhk_requests_total{' "$WORK/metrics" \
    && grep -q '^knhk_build_info{' "$WORK/metrics"; then
  result 6 metrics 1 "$(grep -c '^knhk_' "$WORK/metrics") knhk_ samples"
else
  result 6 metrics 0 "/metrics $metrics without knhk_requests_total or knhk_build_info"
fi

# 7 telemetry and ledger
if need_token 7 telemetry+ledger; then
  telemetry="$(sed -n 's/^knhk_telemetry_check_ok \([0-9.e+-]*\)$/\1/p' "$WORK/metrics" 2>/dev/null || true)"
  ledger="$(field health .dependencies.ledger.status)"
  code="$(get checkpoint GET /api/v1/receipts/checkpoint)"
  size="$(field checkpoint '.tree_size // 0')"
  verdict="no checkpoint ($code)"
  if [[ "$code" == 200 && "$size" =~ ^[1-9][0-9]*$ ]]; then
    proof="$(get proof GET "/api/v1/receipts/$((size - 1))/proof")"
    if [[ "$proof" == 200 ]] && knhk receipts verify-bundle "$WORK/proof" >"$WORK/verify" 2>&1; then
      verdict=verified
    else
      verdict="proof of entry $((size - 1)): $proof $(head -n 1 "$WORK/verify" 2>/dev/null || true)"
    fi
  fi
  if [[ "$telemetry" == 1 || "$telemetry" == 1.0 ]] && [[ "$ledger" == up && "$verdict" == verified ]]; then
    result 7 telemetry+ledger 1 "telemetry check ok, ledger up, entry $((size - 1)) of $size proven"
  else
    result 7 telemetry+ledger 0 "telemetry_check_ok '${telemetry}', ledger '${ledger}', $verdict"
  fi
fi

# 8 latency
timing="$(curl -sS -o /dev/null -w '%{http_code} %{time_total}' --max-time 10 "$BASE/health/ready" 2>/dev/null || true)"
ms="$(awk -v s="${timing#* }" 'BEGIN { printf "%d", s * 1000 }')"
if [[ "${timing%% *}" == 200 ]] && ((ms < MAX_LATENCY_MS)); then
  result 8 latency 1 "/health/ready in ${ms} ms < ${MAX_LATENCY_MS} ms"
else
  result 8 latency 0 "/health/ready answered '${timing%% *}' in ${ms} ms (limit ${MAX_LATENCY_MS} ms, status 200)"
fi

total=$((${#PASSED[@]} + ${#FAILED[@]}))
if ((${#FAILED[@]} == 0)); then
  printf 'SUMMARY %s: %d/%d passed\n' "$BASE" "${#PASSED[@]}" "$total"
  audit deploy.smoke_test "$BASE" success "" "$(json_object passed "${#PASSED[@]}" failed 0)"
  exit 0
fi
printf 'SUMMARY %s: %d/%d passed; failed: %s\n' "$BASE" "${#PASSED[@]}" "$total" "$(IFS=,; echo "${FAILED[*]}")"
audit deploy.smoke_test "$BASE" failure "failed: $(IFS=,; echo "${FAILED[*]}")" \
  "$(json_object passed "${#PASSED[@]}" failed "${#FAILED[@]}")"
exit 1
