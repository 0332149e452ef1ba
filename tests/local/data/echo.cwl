cwlVersion: v1.2
class: CommandLineTool
doc: Prints to stdout and stderr without capturing them, and writes the message to result.txt.
baseCommand: [sh, -c, 'echo "stdout of echo: $1"; echo "stderr of echo: $1" >&2; printf "%s\n" "$1" > result.txt', sh]
inputs:
  message:
    type: string
    inputBinding: {position: 1}
outputs:
  result:
    type: File
    outputBinding: {glob: result.txt}
