cwlVersion: v1.2
class: CommandLineTool
doc: Always fails, with a word on stderr.
baseCommand: [sh, -c]
arguments:
  - echo doomed >&2; exit 3
inputs: []
outputs: []
