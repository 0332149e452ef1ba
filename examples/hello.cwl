cwlVersion: v1.2
class: CommandLineTool
doc: Writes a greeting to a file and says so on stdout and stderr.
baseCommand: [sh, -c]
arguments:
  - "echo \"hello $0\" > greeting.txt; echo to-stdout; echo to-stderr >&2"
  - $(inputs.name)
inputs:
  name: string
outputs:
  greeting:
    type: File
    outputBinding: {glob: greeting.txt}
