#!/bin/bash
#
# devstack/plugin.sh
# Runs guest-health-monitor on every host that runs nova-compute (n-cpu).
#
# Dependencies (devstack provides them):
# - functions-common and inc/ini-config (is_service_enabled, iniset, iniget,
#   setup_develop, run_process, stop_process, get_python_exec_prefix, die)
# - DATA_DIR, STACK_USER, SERVICE_PASSWORD, KEYSTONE_SERVICE_URI, REGION_NAME,
#   ENABLE_DEBUG_LOG_LEVEL, LIBVIRT_GROUP
# - devstack/settings of this repo, sourced by devstack beforehand
#
# Entry points, in the order devstack calls them:
# - stack install      install_guest_health_monitor
# - stack post-config  configure_guest_health_monitor
# - stack extra        start_guest_health_monitor
# - unstack            stop_guest_health_monitor
# - clean              cleanup_guest_health_monitor

# Save trace setting: the config step handles a password.
_XTRACE_GHM=$(set +o | grep xtrace)
set +o xtrace


# Guest agents exist only for QEMU guests driven by libvirt; refuse anything
# else rather than run a monitor that can never see a guest.
function _ghm_check_hypervisor {
    if [[ ${VIRT_DRIVER:-libvirt} != libvirt ]]; then
        die $LINENO "guest-health-monitor needs VIRT_DRIVER=libvirt, not ${VIRT_DRIVER}"
    fi
    case ${LIBVIRT_TYPE:-kvm} in
        kvm|qemu)
            ;;
        *)
            die $LINENO "guest-health-monitor needs LIBVIRT_TYPE kvm or qemu, not ${LIBVIRT_TYPE}"
            ;;
    esac
}

# Masakari matches a notification to a host by the name nova-compute
# registered: [DEFAULT] host of the file n-cpu runs with, else the system
# host name (the full one; devstack's LOCAL_HOSTNAME is the short one).
function _ghm_compute_host {
    local host=$GHM_HOST
    if [[ -z $host && -f ${NOVA_CPU_CONF:-} ]]; then
        host=$(iniget "$NOVA_CPU_CONF" DEFAULT host)
    fi
    if [[ -z $host ]]; then
        host=$(hostname)
    fi
    echo "$host"
}

# settings disabled Masakari's introspective monitor; if something enabled
# it again, both monitors would notify for every dead guest.
function _ghm_check_single_monitor {
    if is_service_enabled masakari-introspectiveinstancemonitor; then
        die $LINENO "guest-health-monitor replaces masakari-introspectiveinstancemonitor: both would ping the same guests and notify twice; remove 'enable_service masakari-introspectiveinstancemonitor' from local.conf or disable guest-health-monitor"
    fi
}

function install_guest_health_monitor {
    _ghm_check_hypervisor
    _ghm_check_single_monitor
    setup_develop "$GHM_DIR"
}

function configure_guest_health_monitor {
    local password=${GHM_OS_PASSWORD:-$SERVICE_PASSWORD}

    # Owned by the stack user like every devstack config dir, so that
    # local.conf [[post-config|"$GHM_CONF"]] sections can be merged into it.
    sudo install -d -o "$STACK_USER" -m 0750 "$GHM_CONF_DIR"
    # The daemon runs as the stack user and keeps its outbox, per-domain
    # state and status socket here; files left by an earlier run as root
    # become the stack user's too.
    sudo install -d -o "$STACK_USER" -m 0750 "$GHM_STATE_PATH"
    sudo chown -R "$STACK_USER" "$GHM_STATE_PATH"

    # Start from an empty file that is private before the password goes in.
    rm -f "$GHM_CONF"
    install -m 0640 /dev/null "$GHM_CONF"

    iniset "$GHM_CONF" DEFAULT debug "$GHM_DEBUG"
    iniset "$GHM_CONF" DEFAULT state_path "$GHM_STATE_PATH"

    iniset "$GHM_CONF" libvirt connection_uri "$GHM_LIBVIRT_URI"

    iniset "$GHM_CONF" monitor interval "$GHM_INTERVAL"
    iniset "$GHM_CONF" monitor ping_timeout "$GHM_PING_TIMEOUT"
    iniset "$GHM_CONF" monitor failure_threshold "$GHM_FAILURE_THRESHOLD"

    # sqlite keeps the per-domain state across daemon restarts.
    iniset "$GHM_CONF" cache backend guest_health_monitor.sqlite
    iniset "$GHM_CONF" cache backend_argument "filename:$GHM_STATE_PATH/domains.sqlite"

    iniset "$GHM_CONF" notifier auth_type password
    iniset "$GHM_CONF" notifier auth_url "$KEYSTONE_SERVICE_URI"
    iniset "$GHM_CONF" notifier username "$GHM_OS_USERNAME"
    iniset "$GHM_CONF" notifier password "$password"
    iniset "$GHM_CONF" notifier project_name "$GHM_OS_PROJECT_NAME"
    iniset "$GHM_CONF" notifier user_domain_name "$GHM_OS_DOMAIN_NAME"
    iniset "$GHM_CONF" notifier project_domain_name "$GHM_OS_DOMAIN_NAME"
    iniset "$GHM_CONF" notifier region_name "$REGION_NAME"
    iniset "$GHM_CONF" notifier valid_interfaces "$GHM_OS_INTERFACE"
    if [[ -n $GHM_MASAKARI_ENDPOINT ]]; then
        iniset "$GHM_CONF" notifier endpoint_override "$GHM_MASAKARI_ENDPOINT"
    fi
    if is_service_enabled tls-proxy; then
        iniset "$GHM_CONF" notifier cafile "$SSL_BUNDLE_FILE"
    fi
}

function start_guest_health_monitor {
    local bin_dir=${GHM_BIN_DIR:-$(get_python_exec_prefix)}

    # Written here rather than in post-config: nova-compute's own config file
    # only takes its final form when devstack starts n-cpu, after post-config.
    iniset "$GHM_CONF" DEFAULT host "$(_ghm_compute_host)"

    # Like nova-compute: the stack user, with libvirt's group as the
    # process group, which qemu:///system serves read-write. devstack's
    # unit sends SIGHUP on reload, which the daemon takes as "reopen logs,
    # reapply the log level" and keeps monitoring.
    run_process guest-health-monitor "$bin_dir/guest-health-monitor --config-file $GHM_CONF" "$GHM_LIBVIRT_GROUP" "$STACK_USER"
}

function stop_guest_health_monitor {
    stop_process guest-health-monitor
}

function cleanup_guest_health_monitor {
    sudo rm -rf "$GHM_CONF_DIR" "$GHM_STATE_PATH"
}


if is_service_enabled guest-health-monitor; then
    if [[ ${1:-} == stack ]] && is_service_enabled n-cpu; then
        case ${2:-} in
            install)
                echo_summary "Installing guest-health-monitor"
                install_guest_health_monitor
                ;;
            post-config)
                echo_summary "Configuring guest-health-monitor"
                configure_guest_health_monitor
                ;;
            extra)
                echo_summary "Starting guest-health-monitor"
                start_guest_health_monitor
                ;;
        esac
    fi
    # Stop and clean even where n-cpu is gone now: a host's role may change
    # between stack and unstack.
    if [[ ${1:-} == unstack ]]; then
        stop_guest_health_monitor
    fi
    if [[ ${1:-} == clean ]]; then
        cleanup_guest_health_monitor
    fi
fi

# Restore xtrace
$_XTRACE_GHM
