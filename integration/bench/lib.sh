# Sourced by the scripts in this folder.

# need_tools installs wrk and redis-server (Debian packages) when they are
# missing and this is root; otherwise it says what to install.
need_tools() {
	local missing=()
	command -v wrk >/dev/null 2>&1 || missing+=(wrk)
	command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		export DEBIAN_FRONTEND=noninteractive
		apt-get update
		apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}"
	else
		echo "missing: ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2
		exit 1
	fi
}
