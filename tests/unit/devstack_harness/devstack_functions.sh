# Stand-ins for the devstack functions devstack/plugin.sh calls, with the
# behaviour the plugin relies on. Side effects that would touch the system
# (package installs, systemd units) are appended to $HARNESS_LOG instead, one
# tab-separated line per call; file writes go to the paths given, which the
# tests point into a temporary directory.

function _harness_record {
    local IFS=$'\t'
    echo "$*" >> "$HARNESS_LOG"
}

function die {
    local line=$1
    shift
    echo "[ERROR] line $line: $*" >&2
    exit 1
}

function echo_summary {
    echo "$@"
}

# As in devstack: a service is enabled when it is listed in ENABLED_SERVICES;
# "nova" stands for any n-* service.
function is_service_enabled {
    local service
    for service in "$@"; do
        if [[ ,${ENABLED_SERVICES}, =~ ,${service}, ]]; then
            return 0
        fi
        if [[ $service == nova && ,${ENABLED_SERVICES} =~ ,n- ]]; then
            return 0
        fi
    done
    return 1
}

# iniset [-sudo] file section option value: create the file and the section
# as needed, replace the option in place, keep the file's mode.
function iniset {
    if [[ $1 == -sudo ]]; then
        shift
    fi
    local file=$1
    if [[ ! -e $file ]]; then
        : > "$file"
    fi
    local updated
    updated=$(INI_SECTION=$2 INI_OPTION=$3 INI_VALUE=$4 awk '
        function key(line,  k) {
            k = line
            sub(/[ \t]*=.*/, "", k)
            return k
        }
        function emit() {
            print ENVIRON["INI_OPTION"] " = " ENVIRON["INI_VALUE"]
            done = 1
        }
        /^\[.*\][ \t]*$/ {
            if (in_section && !done) emit()
            in_section = ($0 == "[" ENVIRON["INI_SECTION"] "]")
            print
            next
        }
        in_section && /=/ && key($0) == ENVIRON["INI_OPTION"] {
            if (!done) emit()
            next
        }
        { print }
        END {
            if (!done) {
                if (!in_section) print "[" ENVIRON["INI_SECTION"] "]"
                emit()
            }
        }
    ' "$file")
    # Write in place so the file keeps its inode and mode, as sed -i does.
    printf '%s\n' "$updated" > "$file"
}

# iniget file section option: the value, or nothing.
function iniget {
    INI_SECTION=$2 INI_OPTION=$3 awk '
        /^\[.*\][ \t]*$/ { in_section = ($0 == "[" ENVIRON["INI_SECTION"] "]"); next }
        in_section && /=/ {
            k = $0; sub(/[ \t]*=.*/, "", k)
            if (k != ENVIRON["INI_OPTION"]) next
            v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]*$/, "", v)
            print v
            exit
        }
    ' "$1"
}

# As in devstack: a disabled service is remembered, and enable_service
# refuses it afterwards (whatever the order plugins' settings are read in).
function _cleanup_service_list {
    echo "$1" | sed -e 's/,,*/,/g; s/^,//; s/,$//'
}

function enable_service {
    local tmpsvcs=",${ENABLED_SERVICES},"
    local service
    for service in "$@"; do
        if [[ ,${DISABLED_SERVICES:-}, =~ ,${service}, ]]; then
            echo "WARNING: attempt to enable_service ${service} when it has been disabled" >&2
            continue
        fi
        if ! is_service_enabled "$service"; then
            tmpsvcs+="$service,"
        fi
    done
    ENABLED_SERVICES=$(_cleanup_service_list "$tmpsvcs")
}

function disable_service {
    local disabled_svcs="${DISABLED_SERVICES:-}"
    local enabled_svcs=",${ENABLED_SERVICES},"
    local service
    for service in "$@"; do
        disabled_svcs+=",$service"
        if is_service_enabled "$service"; then
            enabled_svcs=${enabled_svcs//,$service,/,}
        fi
    done
    DISABLED_SERVICES=$(_cleanup_service_list "$disabled_svcs")
    ENABLED_SERVICES=$(_cleanup_service_list "$enabled_svcs")
}

function define_plugin {
    _harness_record define_plugin "$@"
}

function get_python_exec_prefix {
    echo "$HARNESS_BIN_DIR"
}

function setup_develop {
    _harness_record setup_develop "$@"
}

function pip_install {
    _harness_record pip_install "$@"
}

# As in devstack: a command that systemd could not run is fatal, and a
# service that is not enabled is not started.
function run_process {
    local service=$1
    local command=$2
    if [[ $command =~ sudo ]]; then
        die $LINENO "run_process: use the user argument, not sudo"
    fi
    if [[ ! $command =~ ^/ ]]; then
        die $LINENO "run_process: command must start with an absolute path"
    fi
    if is_service_enabled "$service"; then
        _harness_record run_process "$service" "$command" "${3:-}" "${4:-}"
    fi
}

function stop_process {
    _harness_record stop_process "$1"
}

# Runs the command as the calling user; the tests work in a temporary tree.
function sudo {
    _harness_record sudo "$@"
    "$@"
}
