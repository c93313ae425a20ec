#!/bin/bash
# Drives devstack/plugin.sh the way devstack does: source the settings once,
# then source the plugin once per step, traced, under errexit and nounset.
#
# usage: run_plugin.sh STEP...   where STEP is MODE or MODE:PHASE,
#        e.g. stack:install stack:post-config stack:extra, or unstack, or clean
#
# HARNESS_SETTINGS_BEFORE / HARNESS_SETTINGS_AFTER name another plugin's
# settings file to source before / after this one's, as devstack does in
# enable_plugin order. The services enabled at the end are recorded.

set -o errexit -o nounset -o pipefail

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$HARNESS_DIR/../../.." && pwd)

source "$HARNESS_DIR/devstack_functions.sh"

# stack.sh runs with xtrace on; the plugin must keep secrets out of the trace.
set -o xtrace

if [[ -n ${HARNESS_SETTINGS_BEFORE:-} ]]; then
    source "$HARNESS_SETTINGS_BEFORE"
fi
source "$REPO_DIR/devstack/settings"
if [[ -n ${HARNESS_SETTINGS_AFTER:-} ]]; then
    source "$HARNESS_SETTINGS_AFTER"
fi

for step in "$@"; do
    if [[ $step == *:* ]]; then
        source "$REPO_DIR/devstack/plugin.sh" "${step%%:*}" "${step#*:}"
    else
        source "$REPO_DIR/devstack/plugin.sh" "$step"
    fi
done

_harness_record enabled_services "$ENABLED_SERVICES"
