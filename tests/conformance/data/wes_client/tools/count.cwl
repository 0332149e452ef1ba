cwlVersion: v1.2
class: CommandLineTool
doc: Counts the bytes of a file.
baseCommand: [wc, -c]
stdin: $(inputs.file.path)
inputs:
  file: File
stdout: size.txt
outputs:
  size: stdout
