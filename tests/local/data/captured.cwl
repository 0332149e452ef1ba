cwlVersion: v1.2
class: CommandLineTool
doc: Prints to stdout and stderr, both captured into output files by the tool itself.
baseCommand: [sh, -c, 'echo "captured out"; echo "captured err" >&2']
stdout: out.txt
stderr: err.txt
inputs: []
outputs:
  out: {type: stdout}
  err: {type: stderr}
