cwlVersion: v1.2
class: CommandLineTool
doc: Prints its word to stdout and stderr and writes it in upper case to <word>.txt.
baseCommand: [sh, -c, 'echo "stdout of shout: $1"; echo "stderr of shout: $1" >&2; printf "%s" "$1" | tr a-z A-Z > "$1.txt"', sh]
inputs:
  word:
    type: string
    inputBinding: {position: 1}
outputs:
  shouted:
    type: File
    outputBinding: {glob: $(inputs.word).txt}
