cwlVersion: v1.2
class: CommandLineTool
doc: Prints a file to stdout and writes it, followed by a suffix, to greeting.txt.
baseCommand: [sh, -c, 'cat "$1"; echo "stderr of cat" >&2; cat "$1" > greeting.txt; echo "world" >> greeting.txt', sh]
inputs:
  infile:
    type: File
    inputBinding: {position: 1}
outputs:
  greeting:
    type: File
    outputBinding: {glob: greeting.txt}
