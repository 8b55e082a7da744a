#!/usr/bin/env bash
# Starts the fer-realtime page: sets up .venv on first use, then `streamlit run streamlit_app.py`.
#   ./run_app.sh                        http://localhost:8501 (browsers give the camera to localhost only)
#   ./run_app.sh --https                https, with a self-signed certificate made on first use and reused after
#                                       (~/.cache/fer-realtime/tls/): the camera from other machines too
#   ./run_app.sh --https --cert FULLCHAIN.pem --key KEY.pem     a real certificate instead
# Other arguments go to streamlit (./run_app.sh --server.port 8600). See docs/page.md.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup_env.sh requirements.txt
for arg in "$@"; do
  case "$arg" in
    --https|--cert|--cert=*|--key|--key=*) exec .venv/bin/python -m webapp.https "$@" ;;
  esac
done
exec .venv/bin/python -m streamlit run streamlit_app.py --browser.gatherUsageStats false "$@"
