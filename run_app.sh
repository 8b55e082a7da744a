#!/usr/bin/env bash
# Starts the fer-realtime page: sets up .venv on first use, then `streamlit run streamlit_app.py`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup_env.sh requirements.txt
exec .venv/bin/python -m streamlit run streamlit_app.py --browser.gatherUsageStats false "$@"
