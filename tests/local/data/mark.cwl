cwlVersion: v1.2
class: CommandLineTool
doc: Appends a line to the file its input names, then naps; the file's lines count the tool's executions.
baseCommand: [sh, -c]
arguments: ["echo ran >> $0; sleep $1; echo done > done.txt", $(inputs.mark), $(inputs.seconds)]
inputs:
  mark: string
  seconds: int
outputs:
  done:
    type: File
    outputBinding: {glob: done.txt}
