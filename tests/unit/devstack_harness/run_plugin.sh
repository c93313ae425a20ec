#!/bin/bash
# Drives devstack/plugin.sh the way devstack does: source the settings once,
# then source the plugin once per step, traced, under errexit and nounset.
#
# usage: run_plugin.sh STEP...   where STEP is MODE or MODE:PHASE,
#        e.g. stack:install stack:post-config stack:extra, or unstack, or clean

set -o errexit -o nounset -o pipefail

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$HARNESS_DIR/../../.." && pwd)

source "$HARNESS_DIR/devstack_functions.sh"

# stack.sh runs with xtrace on; the plugin must keep secrets out of the trace.
set -o xtrace

source "$REPO_DIR/devstack/settings"

for step in "$@"; do
    if [[ $step == *:* ]]; then
        source "$REPO_DIR/devstack/plugin.sh" "${step%%:*}" "${step#*:}"
    else
        source "$REPO_DIR/devstack/plugin.sh" "$step"
    fi
done
