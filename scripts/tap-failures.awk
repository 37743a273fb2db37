# Prints each failing test of a node:test TAP file: its name, the error of its YAML block (not
# the stack), and the diagnostics it wrote (the `#` lines after the block: a seed to replay, a
# server's last words). Enclosing suites and files that failed only because a test in them
# failed are left out. scripts/test.sh prints this at the end of a run, where a CI log's tail
# shows it, instead of only in the middle of thousands of lines. Hand-written because node's
# spec reporter, whose own list of failures is the obvious source, leaves the diagnostics out.
function indent_of(s) { match(s, /^ */); return RLENGTH }
{
  line = $0
  depth = indent_of(line)
  body = substr(line, depth + 1)
  if (state == "yaml") {
    if (depth == yaml_depth && body == "...") {
      if (!subtests_failed) { print held; printf "%s", yaml; shown = 1 } else shown = 0
      state = "after"; after_depth = test_depth; next
    }
    if (body ~ /^failureType: 'subtestsFailed'/) subtests_failed = 1
    if (depth == yaml_depth) skipping = (body ~ /^(stack|duration_ms|type|failureType):/)
    if (!skipping) yaml = yaml "    " substr(line, yaml_depth + 1) "\n"
    next
  }
  if (state == "after") {
    if (depth == after_depth && body ~ /^# / && body !~ /^# Subtest:/) {
      if (shown) print "    " body
      next
    }
    state = ""
  }
  if (body ~ /^not ok [0-9]+ - /) {
    held = "✖ " substr(body, index(body, " - ") + 3)
    test_depth = depth; yaml_depth = depth + 2; yaml = ""; subtests_failed = 0; skipping = 0
    state = "yaml"
  }
}
