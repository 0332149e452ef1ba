cwlVersion: v1.2
class: CommandLineTool
doc: Prints a line to stdout and stderr, then exits 1.
baseCommand: [sh, -c, 'echo "about to fail"; echo "failing now" >&2; exit 1']
inputs: []
outputs: []
