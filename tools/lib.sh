# Sourced by the set-up and build scripts.

# `timed LABEL COMMAND...` runs the command and prints how long it took, so a CI log shows where
# its minutes go. On stderr, so that a command whose output is thrown away still reports its time.
timed() {
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "time: $label took $((SECONDS - start)) s" >&2
}

# `apt_install PACKAGE...` installs Debian packages, as root or through sudo.
apt_install() {
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  timed "apt-get update" $sudo apt-get update -qq
  timed "apt-get install $*" env DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
