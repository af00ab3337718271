# Sourced by the set-up and build scripts: `timed LABEL COMMAND...` runs the command and prints how
# long it took, so a CI log shows where its minutes go.
timed() {
  local label=$1 start=$SECONDS
  shift
  "$@"
  # On stderr, so that a command whose output is thrown away still reports its time.
  echo "time: $label took $((SECONDS - start)) s" >&2
}
