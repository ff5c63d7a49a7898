#!/usr/bin/env bash
# The guide's Pattern 3: the memory service from any language, with curl only.
#
#   examples/curl.sh [BASE_URL [USER_ID]]
#
# BASE_URL: $1, else $MEMORY_SERVICE_URL, else http://localhost:7071 (`make run`). USER_ID: $2, else a new one.
# $MEMORY_SERVICE_KEY, when set, is sent as x-functions-key (a function key on Azure).
# Steps: start a session, store a turn, get the context (read-your-writes), search, end the session, and poll the
# reflection's status URL until it finishes. Needs curl and python3 (to read fields of the JSON answers).
set -euo pipefail

URL="${1:-${MEMORY_SERVICE_URL:-http://localhost:7071}}"
URL="${URL%/}"
USER_ID="${2:-curl-user-$RANDOM$RANDOM}"
AUTH=()
if [[ -n "${MEMORY_SERVICE_KEY:-}" ]]; then
  AUTH=(-H "x-functions-key: ${MEMORY_SERVICE_KEY}")
fi

step() { printf '\n== %s\n' "$*"; }

# POST a JSON body; print the answer; fail (with the service's JSON error) on an HTTP error.
post() {
  local path="$1" body="$2"
  printf '$ curl -X POST %s%s -d %s\n' "$URL" "$path" "$body" >&2
  curl -sS --fail-with-body -X POST "${URL}${path}" -H 'Content-Type: application/json' ${AUTH[@]+"${AUTH[@]}"} \
    -d "$body"
}

# A top-level field of a JSON document read on stdin.
field() { python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1]) or "")' "$1"; }

pretty() { python3 -m json.tool; }

step "health"
curl -sS --fail-with-body "${URL}/health" | pretty

step "1. start a session for ${USER_ID}"
started="$(post /sessions/start "{\"user_id\": \"${USER_ID}\"}")"
echo "$started" | pretty
SESSION_ID="$(echo "$started" | field session_id)"

step "2. store a turn (201 once stored; the same turn_id again is 200 and stores nothing)"
post /memory/store "{\"user_id\": \"${USER_ID}\", \"session_id\": \"${SESSION_ID}\", \"turn_id\": \"t1\",
  \"user_message\": \"What is a 401k?\",
  \"agent_message\": \"A 401k is a retirement savings plan offered by employers.\"}" | pretty

step "3. the context: the turn just stored is in it"
post /memory/context "{\"user_id\": \"${USER_ID}\", \"session_id\": \"${SESSION_ID}\"}" | field formatted_context

step "4. search the user's past"
post /memory/retrieve "{\"user_id\": \"${USER_ID}\", \"query\": \"What did we discuss about retirement?\", \"top_k\": 5}" \
  | pretty

step "5. end the session (202): reflection starts"
ended="$(post /sessions/end "{\"user_id\": \"${USER_ID}\", \"session_id\": \"${SESSION_ID}\"}")"
echo "$ended" | pretty
STATUS_URL="$(echo "$ended" | field statusQueryGetUri)"

step "6. poll the reflection's status until it finishes"
for _ in $(seq 1 120); do
  status="$(curl -sS --fail-with-body "$STATUS_URL")"
  runtime="$(echo "$status" | field runtimeStatus)"
  echo "runtimeStatus: ${runtime}"
  case "$runtime" in
    Completed)
      echo "$status" | pretty
      exit 0
      ;;
    Failed | Terminated | Canceled)
      echo "$status" | pretty >&2
      exit 1
      ;;
  esac
  sleep 0.5
done
echo "reflection did not finish within 60 s" >&2
exit 1
