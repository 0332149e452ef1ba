cwlVersion: v1.2
class: CommandLineTool
doc: Upper-cases a message on stdout, and says so on stderr.
baseCommand: [sh, -c]
arguments:
  - 'printf "%s\n" "$0" | tr a-z A-Z; echo "shouted $0" >&2'
  - $(inputs.message)
inputs:
  message: string
stdout: shouted.txt
outputs:
  shouted: stdout
